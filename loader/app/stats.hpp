// What our two programs cost over a window of time: the kernel's run statistics, on for that window only.
#pragma once

#include <cstdint>
#include <string>

namespace sockredir::app {

// One program's runs within a window.
struct ProgramRunStats {
    uint64_t runs = 0;        // run_cnt, after minus before
    uint64_t run_time_ns = 0; // run_time_ns, after minus before
    // The mean cost of one run; 0 when it did not run.
    double ns_per_run() const { return runs == 0 ? 0.0 : static_cast<double>(run_time_ns) / static_cast<double>(runs); }
};

struct RunStatsSample {
    std::string pin_dir;
    unsigned window_s = 0;
    ProgramRunStats sock_ops;
    ProgramRunStats sk_msg;
    // The receive-path observer, which runs on every recvmsg of the host (it returns at once for a socket that
    // is not in the map): its program name, empty when none is attached.
    std::string observer_name;
    ProgramRunStats observer;
};

// Turns the kernel's run statistics on (BPF_ENABLE_STATS, BPF_STATS_RUN_TIME) for as long as the sample takes, reads
// run_cnt and run_time_ns of the sock_ops and sk_msg programs pinned in pin_dir (empty: kDefaultPinDir), sleeps
// `seconds`, reads them again and returns the differences. The statistics are on from before the first read to after
// the last, and off again afterwards unless another process (or kernel.bpf_stats_enabled) keeps them on: those share
// the counters, and only the differences are ours. The statistics add two clock reads to every run of every BPF
// program on the machine while they are on. Throws Error when nothing is attached with pins in pin_dir.
RunStatsSample sample_run_stats(const std::string& pin_dir, unsigned seconds);

// Human-readable, one line per program.
std::string format_sample_text(const RunStatsSample& s);
// One JSON object on one line, newline-terminated:
// {"window_s":N,"programs":{"sock_ops":{"runs":R,"run_time_ns":T,"ns_per_run":X},"sk_msg":{...}}}
// ns_per_run is null for a program that did not run.
std::string format_sample_json(const RunStatsSample& s);

} // namespace sockredir::app
