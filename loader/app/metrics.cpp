// The Prometheus text format: "# HELP", "# TYPE", then samples; label values escape \, " and newlines.
#include "loader/app/metrics.hpp"

#include <cstdio>
#include <map>
#include <utility>

#include "bpf/sockredir_shared.h"
#include "loader/app/cli.hpp"
#include "loader/base/error.hpp"

namespace sockredir::app {

namespace {

// One sentence per counter, in enum order: the counters' HELP.
constexpr const char* kCounterHelp[SOCKREDIR_COUNTER_MAX] = {
    "Sockets put into the sockhash.",
    "Sockets the sockhash refused (full, or another failure).",
    "Messages (sendmsg calls) handed straight to the peer socket.",
    "Bytes handed straight to the peer socket.",
    "Messages left on the TCP/IP path.",
    "Connections kept off the map when established: a client socket in blocking mode.",
    "Connections kept off the map when established: a server port whose readers read in a way the redirect path "
    "breaks.",
    "Messages that took TCP: the reader was not yet seen reading compatibly.",
    "Messages that took TCP: bytes sent by TCP were still unread.",
    "Messages that took TCP: flow control, the reader lagged by more than --max-inflight.",
    "Messages that took TCP: the peer was not in the map.",
    "Messages that took TCP: their connection was taken off the redirect path.",
    "Messages that took TCP: a detach was draining the attachment.",
    "Connections taken off redirection: a blocking read.",
    "Connections taken off redirection: SO_PEEK_OFF.",
    "Connections taken off redirection: SO_RCVLOWAT above 1.",
    "Connections taken off redirection: a read with MSG_OOB or MSG_TRUNC.",
    "Blocking reads of a socket in the map that returned EAGAIN (the kernel's defect).",
    "Sockets taken out of the map, back to plain TCP.",
    "Times a direction moved from TCP to redirection.",
    "Connections kept off the map when established: SO_RCVLOWAT or SO_PEEK_OFF already set.",
    "Connections taken off redirection: TCP_INQ set.",
    "Messages that took TCP: their connection moved to TCP for good as a stream.",
    "Connections moved to TCP for good as streams of small writes.",
};

std::string label_value(const std::string& v)
{
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"')
            out += '\\', out += c;
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

class Exposition {
public:
    // Starts a metric family: its HELP and TYPE lines.
    void family(const std::string& name, const char* type, const std::string& help)
    {
        out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    }
    void sample(const std::string& name, const std::string& labels, uint64_t value)
    {
        out_ += name + (labels.empty() ? "" : "{" + labels + "}") + " " + std::to_string(value) + "\n";
    }
    void sample(const std::string& name, const std::string& labels, double value)
    {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.17g", value);
        out_ += name + (labels.empty() ? "" : "{" + labels + "}") + " " + buf + "\n";
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

std::string path_labels(const Direction& d)
{
    return d.redirected ? "path=\"redirected\",reason=\"\"" : "path=\"tcp\",reason=\"" + label_value(d.reason) + "\"";
}

} // namespace

std::string format_prometheus(const Status& s, const std::vector<Connection>& connections)
{
    Exposition e;
    std::string version = kVersion;
    if (const auto space = version.rfind(' '); space != std::string::npos)
        version = version.substr(space + 1);
    e.family("sockredir_build_info", "gauge", "The build of sockredir-min serving these metrics (always 1).");
    e.sample("sockredir_build_info", "version=\"" + label_value(version) + "\"", uint64_t{1});
    e.family("sockredir_attached", "gauge", "Whether sockredir is attached at the pin dir (1) or not (0).");
    e.sample("sockredir_attached", "pin_dir=\"" + label_value(s.pin_dir) + "\"", uint64_t{s.attached});
    if (!s.attached)
        return e.take();
    e.family("sockredir_draining", "gauge", "Whether a detach is draining the attachment (1) or not (0).");
    e.sample("sockredir_draining", "", uint64_t{s.draining});
    e.family("sockredir_observer_attached", "gauge",
             "Whether a receive-path observer is attached (1); without one no direction is redirected (0).");
    e.sample("sockredir_observer_attached",
             s.observer.empty() ? std::string() : "program=\"" + label_value(s.observer) + "\"",
             uint64_t{!s.observer.empty()});
    e.family("sockredir_sockets", "gauge", "Sockets in the sockhash.");
    e.sample("sockredir_sockets", "", s.sockets);
    e.family("sockredir_sockets_max", "gauge", "How many sockets the sockhash holds (--max-sockets).");
    e.sample("sockredir_sockets_max", "", uint64_t{s.max_sockets});
    for (int i = 0; i < SOCKREDIR_COUNTER_MAX; ++i) {
        const std::string name = std::string("sockredir_") + counter_name(i) + "_total";
        e.family(name, "counter", kCounterHelp[i]);
        e.sample(name, "", s.counters[i]);
    }

    // Connections by path: redirected when either direction is, else TCP for the reason of the client's direction.
    std::map<std::string, uint64_t> by_connection, by_direction;
    for (const auto& c : connections) {
        const Direction& d = c.up.redirected || !c.down.redirected ? c.up : c.down;
        ++by_connection[path_labels(d)];
        ++by_direction[path_labels(c.up)];
        ++by_direction[path_labels(c.down)];
    }
    const std::string redirected = "path=\"redirected\",reason=\"\"";
    e.family("sockredir_connections", "gauge",
             "Connections sockredir took, by path: redirected (either direction), or tcp and why.");
    by_connection.try_emplace(redirected, 0); // always there, 0 or not
    for (const auto& [labels, n] : by_connection)
        e.sample("sockredir_connections", labels, n);
    e.family("sockredir_directions", "gauge",
             "Directions of the connections sockredir took, by path: redirected, or tcp and why.");
    by_direction.try_emplace(redirected, 0);
    for (const auto& [labels, n] : by_direction)
        e.sample("sockredir_directions", labels, n);
    uint64_t unread = 0;
    for (const auto& c : connections)
        unread += c.up.unread + c.down.unread;
    e.family("sockredir_unread_bytes", "gauge", "Redirected bytes their readers have not read yet, all connections.");
    e.sample("sockredir_unread_bytes", "", unread);

    // The kernel's run statistics, only when it measures them (kernel.bpf_stats_enabled=1, or a status --sample).
    if (s.msg_runs != 0 || s.sockops_runs != 0) {
        e.family("sockredir_program_runs_total", "counter", "Runs of each program, as the kernel counts them.");
        e.sample("sockredir_program_runs_total", "program=\"sk_msg\"", s.msg_runs);
        e.sample("sockredir_program_runs_total", "program=\"sock_ops\"", s.sockops_runs);
        e.family("sockredir_program_run_seconds_total", "counter",
                 "Time spent in each program, as the kernel measures it.");
        e.sample("sockredir_program_run_seconds_total", "program=\"sk_msg\"", double(s.msg_run_ns) / 1e9);
        e.sample("sockredir_program_run_seconds_total", "program=\"sock_ops\"", double(s.sockops_run_ns) / 1e9);
    }
    return e.take();
}

std::string prometheus_metrics(const std::string& pin_dir)
{
    const Status s = read_status(pin_dir, false);
    if (!s.attached)
        return format_prometheus(s, {});
    try {
        return format_prometheus(s, list_connections(pin_dir, 0, false).connections);
    } catch (const base::Error&) {
        // Detached between the two reads: say what is there now.
        return format_prometheus(read_status(pin_dir, false), {});
    }
}

} // namespace sockredir::app
