// The run statistics of the pinned programs over a window: BPF_ENABLE_STATS held open, two reads, the differences.
#include "loader/app/stats.hpp"

#include "loader/app/contract.hpp"

#include <time.h>

#include <cerrno>
#include <cstdio>

#include "bpf/sockredir_shared.h"
#include "loader/app/pins.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/ebpf/pin.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;

namespace {

struct Reading {
    uint64_t runs = 0;
    uint64_t run_time_ns = 0;
};

Reading read_prog(const Fd& prog)
{
    const auto info = sys::prog_info(prog.get());
    return {info.run_cnt, info.run_time_ns};
}

// The counters only grow while the program lives; a difference below zero would mean another program behind the
// pin, which the open fds rule out. Clamped all the same, so that a surprise shows as 0 and not as 2^64.
ProgramRunStats delta(const Reading& before, const Reading& after)
{
    ProgramRunStats d;
    d.runs = after.runs >= before.runs ? after.runs - before.runs : 0;
    d.run_time_ns = after.run_time_ns >= before.run_time_ns ? after.run_time_ns - before.run_time_ns : 0;
    return d;
}

// The whole window, also when a signal that does not end the process interrupts it.
void sleep_seconds(unsigned seconds)
{
    timespec left{static_cast<time_t>(seconds), 0};
    while (::nanosleep(&left, &left) != 0)
        if (errno != EINTR)
            throw Error("nanosleep", "sampling window", errno);
}

std::string program_json(const ProgramRunStats& p)
{
    std::string out = "{\"runs\":" + std::to_string(p.runs) + ",\"run_time_ns\":" + std::to_string(p.run_time_ns);
    if (p.runs == 0) {
        out += ",\"ns_per_run\":null}";
    } else {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f", p.ns_per_run());
        out += ",\"ns_per_run\":" + std::string(buf) + "}";
    }
    return out;
}

std::string program_text(const char* name, const ProgramRunStats& p)
{
    char line[160];
    if (p.runs == 0)
        std::snprintf(line, sizeof line, "  %-9s did not run\n", name);
    else
        std::snprintf(line, sizeof line, "  %-9s %llu runs, %llu ns, %.0f ns per run\n", name,
                      static_cast<unsigned long long>(p.runs), static_cast<unsigned long long>(p.run_time_ns),
                      p.ns_per_run());
    return line;
}

} // namespace

RunStatsSample sample_run_stats(const std::string& pin_dir, unsigned seconds)
{
    RunStatsSample s;
    const PinDir dir(pin_dir);
    s.pin_dir = dir.path();
    s.window_s = seconds;
    // Attached means the link is pinned, as for status; the programs are then pinned beside it.
    if (!ebpf::pin_exists(dir / kPinLink))
        throw Error("not attached (no pins in " + dir.path() + ")");
    // The programs are opened before the statistics go on, so that a missing pin costs the machine nothing.
    const Fd sockops = sys::obj_get(dir / SOCKREDIR_PROG_SOCKOPS);
    const Fd msg = sys::obj_get(dir / SOCKREDIR_PROG_MSG);
    Fd observer;
    if (ebpf::pin_exists(dir / kPinObserverLink))
        for (const char* name : kObserverPrograms)
            if (ebpf::pin_exists(dir / name)) {
                observer = sys::obj_get(dir / name);
                s.observer_name = name;
            }

    const Fd stats = sys::enable_stats(BPF_STATS_RUN_TIME);
    const Reading sockops_before = read_prog(sockops);
    const Reading msg_before = read_prog(msg);
    const Reading observer_before = observer ? read_prog(observer) : Reading{};
    sleep_seconds(seconds);
    const Reading sockops_after = read_prog(sockops);
    const Reading msg_after = read_prog(msg);
    const Reading observer_after = observer ? read_prog(observer) : Reading{};
    // `stats` closes at the end of this scope, after the second reading: the window is covered whole.

    s.sock_ops = delta(sockops_before, sockops_after);
    s.sk_msg = delta(msg_before, msg_after);
    if (observer)
        s.observer = delta(observer_before, observer_after);
    return s;
}

std::string format_sample_text(const RunStatsSample& s)
{
    return "run statistics over " + std::to_string(s.window_s) + " s (pins in " + s.pin_dir + ")\n" +
           program_text("sock_ops", s.sock_ops) + program_text("sk_msg", s.sk_msg) +
           (s.observer_name.empty() ? std::string() : program_text("observer", s.observer));
}

std::string format_sample_json(const RunStatsSample& s)
{
    return "{\"window_s\":" + std::to_string(s.window_s) + ",\"programs\":{\"sock_ops\":" + program_json(s.sock_ops) +
           ",\"sk_msg\":" + program_json(s.sk_msg) +
           (s.observer_name.empty() ? std::string() : ",\"observer\":" + program_json(s.observer)) + "}}\n";
}

} // namespace sockredir::app
