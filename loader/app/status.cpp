// status: everything comes from the pins and the kernel's answers about them.
#include "loader/app/status.hpp"

#include "loader/app/contract.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "loader/app/pins.hpp"
#include "loader/app/ports.hpp"
#include "loader/app/selftest.hpp"
#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/mounts.hpp"
#include "loader/ebpf/pin.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;
using base::read_file_text;

namespace {

// Number of possible CPUs: the per-CPU value layout of BPF_MAP_LOOKUP_ELEM.
unsigned possible_cpus()
{
    std::string text = read_file_text("/sys/devices/system/cpu/possible");
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.pop_back();
    unsigned count = 0;
    size_t i = 0;
    while (i < text.size()) {
        size_t comma = text.find(',', i);
        if (comma == std::string::npos)
            comma = text.size();
        const std::string_view range = std::string_view(text).substr(i, comma - i);
        const auto dash = range.find('-');
        const auto lo = base::parse_decimal(range.substr(0, dash));
        const auto hi = dash == std::string_view::npos ? lo : base::parse_decimal(range.substr(dash + 1));
        if (!lo || !hi || *hi < *lo)
            throw Error("cannot parse /sys/devices/system/cpu/possible: '" + text + "'");
        count += *hi - *lo + 1;
        i = comma + 1;
    }
    if (count == 0)
        throw Error("cannot read /sys/devices/system/cpu/possible");
    return count;
}

// Counter `index` of the per-CPU array `counters`, summed; 0 where the lookup finds nothing. `per_cpu`: one slot per
// possible CPU.
uint64_t sum_counter(int counters, uint32_t index, std::vector<uint64_t>& per_cpu)
{
    uint64_t sum = 0;
    if (sys::map_lookup(counters, &index, per_cpu.data()))
        for (uint64_t v : per_cpu)
            sum += v;
    return sum;
}

// The cgroup2 directory whose inode number is `id`, searched breadth-first.
std::string find_cgroup(const std::string& root, uint64_t id)
{
    std::vector<std::string> queue{root};
    for (size_t i = 0; i < queue.size() && i < 100000; ++i) {
        struct stat st {};
        if (::stat(queue[i].c_str(), &st) == 0 && st.st_ino == id)
            return queue[i];
        DIR* d = ::opendir(queue[i].c_str());
        if (d == nullptr)
            continue;
        while (dirent* e = ::readdir(d)) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.')
                continue;
            queue.push_back(queue[i] == "/" ? "/" + std::string(e->d_name) : queue[i] + "/" + e->d_name);
        }
        ::closedir(d);
    }
    return {};
}

// The length of the valid UTF-8 sequence at s[i], 0 when there is none (a stray continuation byte, an overlong or
// truncated sequence, a surrogate, past U+10FFFF).
size_t utf8_length(const std::string& s, size_t i)
{
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (n == 0 || i + n > s.size())
        return 0;
    for (size_t k = 1; k < n; ++k)
        if ((b(i + k) & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && b(i + 1) < 0xa0) || (c == 0xed && b(i + 1) >= 0xa0) || (c == 0xf0 && b(i + 1) < 0x90) ||
        (c == 0xf4 && b(i + 1) >= 0x90))
        return 0;
    return n;
}

} // namespace

std::string json_string(const std::string& s)
{
    std::string out = "\"";
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (static_cast<unsigned char>(c) >= 0x80) {
            // Text of other processes' choosing (a command cut at 15 bytes): invalid UTF-8 becomes U+FFFD.
            if (const size_t n = utf8_length(s, i); n != 0) {
                out.append(s, i, n);
                i += n - 1;
            } else {
                out += "\\ufffd";
            }
            continue;
        }
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

const char* counter_name(int index)
{
    static const char* const kNames[SOCKREDIR_COUNTER_MAX] = {
        "sockets_added", "insert_failed", "messages_redirected", "bytes_redirected", "messages_passed",
        "skipped_blocking_client", "skipped_learned_port", "passed_unproven_reader", "passed_catching_up",
        "passed_held_back", "passed_no_peer", "passed_incompatible", "passed_draining", "reader_blocking",
        "reader_peek_off", "reader_lowat", "reader_oob_or_trunc", "blocking_read_eagain", "sockets_evicted",
        "directions_promoted", "skipped_reader_options", "reader_inq", "passed_demoted",
        "connections_demoted",
    };
    return index >= 0 && index < SOCKREDIR_COUNTER_MAX ? kNames[index] : "unknown";
}

Status read_status(const std::string& pin_dir, bool resolve_cgroup)
{
    const PinDir p(pin_dir);
    Status s;
    s.pin_dir = p.path();
    const auto found = read_attachment(p.path());
    if (!found.link)
        return s;
    s.attached = true;
    s.link_id = found.link_id;
    s.cgroup_id = found.cgroup_id;
    s.draining = found.draining;
    try {
        if (resolve_cgroup)
            s.cgroup = find_cgroup(ebpf::cgroup2_root(false), s.cgroup_id);
    } catch (const Error&) {
        s.cgroup.clear();
    }

    const auto sockops = sys::prog_info(sys::obj_get(p / SOCKREDIR_PROG_SOCKOPS).get());
    const auto msg = sys::prog_info(sys::obj_get(p / SOCKREDIR_PROG_MSG).get());
    s.sockops_id = sockops.id;
    s.msg_id = msg.id;
    s.sockops_runs = sockops.run_cnt;
    s.sockops_run_ns = sockops.run_time_ns;
    s.msg_runs = msg.run_cnt;
    s.msg_run_ns = msg.run_time_ns;

    Fd socks = sys::obj_get(p / SOCKREDIR_MAP_SOCKS);
    const auto mi = sys::map_info(socks.get());
    s.sock_hash_id = mi.id;
    s.max_sockets = mi.max_entries;
    sockredir_key key{}, next{};
    bool first = true;
    while (sys::map_next_key(socks.get(), first ? nullptr : &key, &next)) {
        key = next;
        first = false;
        ++s.sockets;
    }

    if (ebpf::pin_exists(p / kPinObserverLink))
        for (const char* name : kObserverPrograms)
            if (ebpf::pin_exists(p / name))
                s.observer = name;

    Fd counters = sys::obj_get(p / SOCKREDIR_MAP_COUNTERS);
    s.counters_id = sys::map_info(counters.get()).id;
    std::vector<uint64_t> per_cpu(possible_cpus());
    for (uint32_t i = 0; i < SOCKREDIR_COUNTER_MAX; ++i)
        s.counters[i] = sum_counter(counters.get(), i, per_cpu);

    if (const auto config = read_config(p.path())) {
        s.ports = format_ports(config->value);
        s.defects = config->value.defects;
    }
    return s;
}

uint64_t read_counter(const std::string& pin_dir, uint32_t index)
{
    const Fd counters = sys::obj_get(PinDir(pin_dir) / SOCKREDIR_MAP_COUNTERS);
    std::vector<uint64_t> per_cpu(possible_cpus());
    return sum_counter(counters.get(), index, per_cpu);
}

std::string format_text(const Status& s)
{
    if (!s.attached)
        return "not attached (no pins in " + s.pin_dir + ")\n";
    std::string out;
    char line[256];
    auto add = [&](const char* fmt, auto... args) {
        std::snprintf(line, sizeof line, fmt, args...);
        out += line;
    };
    add("attached%s\n", s.draining ? " (draining)" : "");
    add("  cgroup        %s (id %llu)\n", s.cgroup.empty() ? "?" : s.cgroup.c_str(),
        static_cast<unsigned long long>(s.cgroup_id));
    add("  pin dir       %s\n", s.pin_dir.c_str());
    add("  programs      sock_ops id %u (link id %u), sk_msg id %u\n", s.sockops_id, s.link_id, s.msg_id);
    add("  maps          sock_hash id %u, counters id %u\n", s.sock_hash_id, s.counters_id);
    add("  ports         %s\n", s.ports.c_str());
    add("  observer      %s\n", s.observer.empty() ? "none: every connection stays on TCP" : s.observer.c_str());
    add("  kernel defects  %s\n", format_defects(s.defects).c_str());
    add("  sockets       %llu of %u\n", static_cast<unsigned long long>(s.sockets), s.max_sockets);
    for (int i = 0; i < SOCKREDIR_COUNTER_MAX; ++i)
        add("  %-24s %llu\n", counter_name(i), static_cast<unsigned long long>(s.counters[i]));
    if (s.msg_runs == 0 && s.sockops_runs == 0) {
        out += "  run cost      not measured (sysctl kernel.bpf_stats_enabled=1 to measure)\n";
    } else {
        const auto per_run = [](uint64_t ns, uint64_t runs) { return runs == 0 ? 0.0 : double(ns) / double(runs); };
        add("  run cost      sk_msg %.0f ns over %llu runs, sock_ops %.0f ns over %llu runs\n",
            per_run(s.msg_run_ns, s.msg_runs), static_cast<unsigned long long>(s.msg_runs),
            per_run(s.sockops_run_ns, s.sockops_runs), static_cast<unsigned long long>(s.sockops_runs));
    }
    return out;
}

std::string format_json(const Status& s)
{
    std::string out = "{\"attached\":";
    out += s.attached ? "true" : "false";
    out += ",\"pin_dir\":" + json_string(s.pin_dir);
    if (s.attached) {
        out += ",\"draining\":";
        out += s.draining ? "true" : "false";
        out += ",\"cgroup\":" + json_string(s.cgroup);
        out += ",\"cgroup_id\":" + std::to_string(s.cgroup_id);
        out += ",\"link_id\":" + std::to_string(s.link_id);
        out += ",\"programs\":{\"sock_ops\":" + std::to_string(s.sockops_id) +
               ",\"sk_msg\":" + std::to_string(s.msg_id) + "}";
        out += ",\"maps\":{\"sock_hash\":" + std::to_string(s.sock_hash_id) +
               ",\"counters\":" + std::to_string(s.counters_id) + "}";
        out += ",\"sockets\":" + std::to_string(s.sockets);
        out += ",\"max_sockets\":" + std::to_string(s.max_sockets);
        out += ",\"ports\":" + json_string(s.ports);
        out += ",\"observer\":" + json_string(s.observer);
        // What attach's live self-tests found on this kernel, and which of them it ran.
        out += ",\"defects\":[";
        out += defect_list(s.defects, true);
        out += "],\"defects_probed\":[";
        out += defect_list(s.defects >> SOCKREDIR_DEFECT_PROBED_SHIFT, true);
        out += "]";
        out += ",\"run_stats\":{\"sock_ops\":{\"runs\":" + std::to_string(s.sockops_runs) +
               ",\"run_time_ns\":" + std::to_string(s.sockops_run_ns) +
               "},\"sk_msg\":{\"runs\":" + std::to_string(s.msg_runs) +
               ",\"run_time_ns\":" + std::to_string(s.msg_run_ns) + "}}";
        out += ",\"counters\":{";
        for (int i = 0; i < SOCKREDIR_COUNTER_MAX; ++i) {
            if (i != 0)
                out += ",";
            out += "\"" + std::string(counter_name(i)) + "\":" + std::to_string(s.counters[i]);
        }
        out += "}";
    }
    return out + "}\n";
}

} // namespace sockredir::app
