// The eviction: the pinned iterator over the pinned sockhash, or the pinned unmap program run on batches of its
// keys, again and again until the map is empty or time is up.
#include "loader/app/evict.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/ebpf/iter.hpp"
#include "loader/ebpf/pin.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;
using Clock = std::chrono::steady_clock;

namespace {

// One run over every socket of the map; returns how many it kept for their unread data.
class Evictor {
public:
    virtual ~Evictor() = default;
    virtual uint64_t run() = 0;
    virtual const char* program() const = 0;
};

// The iterator: one BPF_ITER_CREATE and read() walks the whole map in the kernel.
class IterEvictor : public Evictor {
public:
    explicit IterEvictor(Fd link) : link_(std::move(link)) {}
    const char* program() const override { return SOCKREDIR_PROG_EVICT; }
    uint64_t run() override
    {
        const auto out = ebpf::run_iterator(link_.get());
        // A socket can be reported twice (iter.hpp): count keys.
        std::set<std::string> keys;
        for (size_t at = 0; at + sizeof(sockredir_evict_record) <= out.size(); at += sizeof(sockredir_evict_record)) {
            sockredir_evict_record r;
            std::memcpy(&r, out.data() + at, sizeof r);
            if (r.verdict == SOCKREDIR_EVICT_UNREAD)
                keys.emplace(reinterpret_cast<const char*>(&r.key), sizeof r.key);
        }
        return keys.size();
    }

private:
    Fd link_;
};

// The unmap program: the keys listed from user space, SOCKREDIR_UNMAP_BATCH at a time into the batch map, the
// program run on each batch by BPF_PROG_TEST_RUN, its verdicts read back.
class UnmapEvictor : public Evictor {
public:
    UnmapEvictor(Fd prog, Fd batch_map, int socks) : prog_(std::move(prog)), batch_map_(std::move(batch_map)), socks_(socks)
    {
    }
    const char* program() const override { return SOCKREDIR_PROG_UNMAP; }
    uint64_t run() override
    {
        std::vector<sockredir_key> keys;
        sockredir_key key{}, next{};
        for (bool first = true; sys::map_next_key(socks_, first ? nullptr : &key, &next); first = false) {
            key = next;
            keys.push_back(key);
        }
        uint64_t unread = 0;
        for (size_t at = 0; at < keys.size(); at += SOCKREDIR_UNMAP_BATCH) {
            sockredir_unmap_batch batch{};
            batch.count = static_cast<uint32_t>(std::min<size_t>(SOCKREDIR_UNMAP_BATCH, keys.size() - at));
            std::copy_n(keys.begin() + static_cast<std::ptrdiff_t>(at), batch.count, batch.keys);
            const uint32_t zero = 0;
            sys::map_update(batch_map_.get(), &zero, &batch, BPF_ANY);
            // A packet the size of an Ethernet header: the least a classifier's test run takes.
            const std::array<std::byte, 14> packet{};
            sys::prog_test_run(prog_.get(), packet);
            if (!sys::map_lookup(batch_map_.get(), &zero, &batch))
                throw Error("the " SOCKREDIR_MAP_UNMAP_BATCH " map has no entry 0");
            unread += static_cast<uint64_t>(std::count(batch.verdicts, batch.verdicts + batch.count,
                                                       uint32_t{SOCKREDIR_EVICT_UNREAD}));
        }
        return unread;
    }

private:
    Fd prog_;
    Fd batch_map_;
    int socks_;
};

// kInFlightGrace, or for tests that show what it closes: SOCKREDIR_TEST_INFLIGHT_GRACE_MS.
std::chrono::milliseconds in_flight_grace()
{
    static const char* value = std::getenv("SOCKREDIR_TEST_INFLIGHT_GRACE_MS");
    if (value == nullptr)
        return kInFlightGrace;
    const auto ms = base::parse_decimal(value);
    return ms ? std::chrono::milliseconds(*ms) : kInFlightGrace;
}

std::chrono::milliseconds since(Clock::time_point start)
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// The evictor of the pins in `dir`: the iterator where attach could load it and the kernel links it, else the
// unmap program; nullptr with the reason in `why` when neither can run.
std::unique_ptr<Evictor> make_evictor(const std::string& dir, int socks, std::string& why)
{
    const auto iter_path = dir + "/" + SOCKREDIR_PROG_EVICT;
    if (ebpf::pin_exists(iter_path)) {
        try {
            const Fd prog = sys::obj_get(iter_path);
            return std::make_unique<IterEvictor>(ebpf::link_map_iterator(prog.get(), socks));
        } catch (const Error& e) {
            why = std::string("the kernel refused to link ") + SOCKREDIR_PROG_EVICT + ": " + e.what();
        }
    }
    const auto unmap_path = dir + "/" + SOCKREDIR_PROG_UNMAP;
    const auto batch_path = dir + "/" + SOCKREDIR_MAP_UNMAP_BATCH;
    if (ebpf::pin_exists(unmap_path) && ebpf::pin_exists(batch_path))
        return std::make_unique<UnmapEvictor>(sys::obj_get(unmap_path), sys::obj_get(batch_path), socks);
    if (why.empty())
        why = "attach could not load " SOCKREDIR_PROG_EVICT " or " SOCKREDIR_PROG_UNMAP
              " on this kernel (see sockredir-min check)";
    return nullptr;
}

} // namespace

std::string evict_summary(const EvictResult& r)
{
    if (r.before == 0)
        return {};
    if (!r.ran)
        return "; " + std::to_string(r.before) + " socket(s) keep the sockmap path until their connections close (" +
               r.unavailable + ")";
    return "; " + std::to_string(r.before - std::min(r.left, r.before)) + " of " + std::to_string(r.before) +
           " socket(s) back on TCP in " + std::to_string(r.took.count()) + " ms (" + r.how + ")";
}

std::string no_evict_note(const std::string& why)
{
    return "note: after detach, connections will keep the sockmap path until they close: this kernel cannot load "
           "the programs that hand them back to TCP (" +
           why + ")";
}

std::string evict_failure(const EvictResult& r, std::chrono::milliseconds timeout)
{
    if (!r.ran || r.left == 0)
        return {};
    const auto seconds = std::to_string(timeout.count() / 1000) +
                         (timeout.count() % 1000 != 0 ? "." + std::to_string(timeout.count() % 1000 / 100) : "");
    std::string why = r.unread == r.left ? "still hold unread redirected data"
                                         : "are still in the sockhash (" + std::to_string(r.unread) +
                                               " holding unread redirected data)";
    return std::to_string(r.left) + " socket(s) " + why + " after " + seconds +
           " s: left in the map with their data, on the sockmap path and keeping sockredir's programs and maps "
           "loaded until it is read or the connection closes (detach --drain-timeout waits longer)";
}

uint64_t sockets_in_map(int map_fd)
{
    sockredir_key key{}, next{};
    uint64_t n = 0;
    for (bool first = true; sys::map_next_key(map_fd, first ? nullptr : &key, &next); first = false) {
        key = next;
        ++n;
    }
    return n;
}

EvictResult evict_sockets(const std::string& dir, const EvictOptions& options)
{
    const auto start = Clock::now();
    EvictResult result;
    const auto map_path = dir + "/" + SOCKREDIR_MAP_SOCKS;
    if (!ebpf::pin_exists(map_path))
        return result;
    const Fd map = sys::obj_get(map_path);
    result.before = result.left = sockets_in_map(map.get());
    if (result.before == 0)
        return result; // nothing to hand back, nothing to wait for

    const auto evictor = make_evictor(dir, map.get(), result.unavailable);
    if (!evictor)
        return result;
    result.how = evictor->program();
    std::this_thread::sleep_until(options.drained_at + in_flight_grace());
    const auto first_run = Clock::now();
    for (;;) {
        result.unread = evictor->run();
        ++result.runs;
        result.ran = true;
        result.left = sockets_in_map(map.get());
        if (result.left == 0 || Clock::now() - first_run >= options.timeout)
            break;
        std::this_thread::sleep_for(kEvictInterval);
    }
    result.took = since(start);
    return result;
}

} // namespace sockredir::app
