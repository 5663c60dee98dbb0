// The eviction: the object's iterator linked to the pinned sockhash, or its unmap program run on batches of the
// sockhash's keys, again and again until the map is empty or time is up.
#include "loader/app/evict.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "loader/app/contract.hpp"
#include "loader/app/embedded.hpp"
#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/iter.hpp"
#include "loader/ebpf/pin.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;
using Clock = std::chrono::steady_clock;

// One run over every socket of the map; returns how many it kept for their unread data (declared in evict.hpp).
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
    UnmapEvictor(Fd prog, Fd batch_map, int socks)
        : prog_(std::move(prog)), batch_map_(std::move(batch_map)), socks_(socks)
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
            unread += static_cast<uint64_t>(
                std::count(batch.verdicts, batch.verdicts + batch.count, uint32_t{SOCKREDIR_EVICT_UNREAD}));
        }
        return unread;
    }

private:
    Fd prog_;
    Fd batch_map_;
    int socks_;
};

namespace {

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

// The evictor for the sockhash pinned at `map_path`: the eviction programs of `object` loaded now, against that very
// map (a detach pays for their CO-RE only when there are sockets to hand back, an attach never); the iterator where
// the kernel loads and links it, else the unmap program; nullptr with the reason in `why` when neither can run.
std::unique_ptr<Evictor> make_evictor(std::span<const std::byte> object, const std::string& map_path, int socks,
                                      std::string& why)
{
    ebpf::Collection c;
    try {
        ebpf::CollectionSpec spec = ebpf::open_object(object);
        check_contract(spec);
        const auto names = optional_programs();
        spec = spec.subset(names);
        if (spec.programs.empty()) {
            why = "the object has neither " SOCKREDIR_PROG_EVICT " nor " SOCKREDIR_PROG_UNMAP;
            return nullptr;
        }
        std::vector<ebpf::Map> existing;
        existing.push_back({SOCKREDIR_MAP_SOCKS, BPF_MAP_TYPE_SOCKHASH, sys::obj_get(map_path)});
        c = ebpf::create_maps(spec, std::move(existing));
        ebpf::LoadOptions load;
        load.optional = names;
        ebpf::load_programs(spec, c, load);
    } catch (const Error& e) {
        why = e.what();
        return nullptr;
    }
    for (const auto& skipped : c.not_loaded)
        why += (why.empty() ? "" : "; ") + std::string(skipped.error.what());
    // For the tests that prove each program on a kernel that loads both: SOCKREDIR_TEST_EVICT_WITH names the one.
    static const char* only = std::getenv("SOCKREDIR_TEST_EVICT_WITH");
    const auto allowed = [](const char* name) { return only == nullptr || std::strcmp(only, name) == 0; };
    const auto* iter = allowed(SOCKREDIR_PROG_EVICT) ? c.programs.find(SOCKREDIR_PROG_EVICT) : nullptr;
    if (iter != nullptr) {
        try {
            return std::make_unique<IterEvictor>(ebpf::link_map_iterator(iter->fd.get(), socks));
        } catch (const Error& e) {
            why += (why.empty() ? "" : "; ") + std::string("linking ") + SOCKREDIR_PROG_EVICT + ": " + e.what();
        }
    }
    if (auto* unmap = allowed(SOCKREDIR_PROG_UNMAP) ? c.programs.find(SOCKREDIR_PROG_UNMAP) : nullptr)
        return std::make_unique<UnmapEvictor>(std::move(unmap->fd), std::move(c.maps.at(SOCKREDIR_MAP_UNMAP_BATCH).fd),
                                              socks);
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
    return "note: after detach, connections will keep the sockmap path until they close (" + why + ")";
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

Eviction::Eviction(const std::string& dir, std::span<const std::byte> object)
    : map_path_(dir + "/" + SOCKREDIR_MAP_SOCKS), object_(object.empty() ? embedded_object() : object)
{
    if (!ebpf::pin_exists(map_path_))
        return;
    map_ = sys::obj_get(map_path_);
    if (sockets_in_map(map_.get()) != 0)
        load();
}

Eviction::~Eviction() = default;

void Eviction::load()
{
    if (loaded_)
        return;
    loaded_ = true;
    evictor_ = make_evictor(object_, map_path_, map_.get(), unavailable_);
}

EvictResult Eviction::run(std::chrono::steady_clock::time_point drained_at, std::chrono::milliseconds timeout)
{
    const auto start = Clock::now();
    EvictResult result;
    if (!map_)
        return result;
    result.before = result.left = sockets_in_map(map_.get());
    if (result.before == 0)
        return result; // nothing to hand back, nothing to wait for
    load();            // sockets that entered after the constructor looked
    result.unavailable = unavailable_;
    if (!evictor_)
        return result;
    result.how = evictor_->program();
    std::this_thread::sleep_until(drained_at + in_flight_grace());
    const auto first_run = Clock::now();
    for (;;) {
        result.unread = evictor_->run();
        ++result.runs;
        result.ran = true;
        result.left = sockets_in_map(map_.get());
        if (result.left == 0 || Clock::now() - first_run >= timeout)
            break;
        std::this_thread::sleep_for(kEvictInterval);
    }
    result.took = since(start);
    return result;
}

} // namespace sockredir::app
