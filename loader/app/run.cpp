// run_foreground: the daemon's lifecycle; ownership of the attachment by a lock on its pin dir and its link id.
#include "loader/app/run.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "loader/app/checked_attach.hpp"
#include "loader/app/evict.hpp"
#include "loader/app/http.hpp"
#include "loader/app/metrics.hpp"
#include "loader/app/pins.hpp"
#include "loader/app/selftest.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;

namespace {

// The id of the cgroup link pinned in pin_dir, 0 when none is.
uint32_t pinned_link_id(const std::string& pin_dir)
{
    return read_attachment(pin_dir).link_id;
}

void say(const std::string& line)
{
    std::fputs((line + "\n").c_str(), stdout);
    std::fflush(stdout); // a journal or a pipe reads it now, not at exit
}

// Waits for SIGTERM or SIGINT (blocked, read from a signalfd), serving the metrics meanwhile. Returns the signal.
int wait_for_stop(const sigset_t& stop, MetricsServer* metrics)
{
    Fd signals(::signalfd(-1, &stop, SFD_CLOEXEC));
    if (!signals)
        throw Error("signalfd for SIGTERM and SIGINT", errno);
    std::vector<pollfd> fds;
    for (;;) {
        fds.assign(1, pollfd{signals.get(), POLLIN, 0});
        if (metrics)
            metrics->add_pollfds(fds);
        const int n = ::poll(fds.data(), fds.size(), metrics ? metrics->poll_timeout_ms() : -1);
        if (n < 0 && errno != EINTR)
            throw Error("waiting for SIGTERM or SIGINT", errno);
        if (n > 0 && (fds[0].revents & POLLIN)) {
            signalfd_siginfo info{};
            if (::read(signals.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info))
                return static_cast<int>(info.ssi_signo);
        }
        if (metrics)
            metrics->handle(fds, 1);
    }
}

} // namespace

void run_foreground(const AttachOptions& options, const DetachOptions& detach_options,
                    const std::string& metrics_address)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &stop, nullptr) != 0)
        throw Error("blocking SIGTERM and SIGINT", errno);

    // The endpoint before the attach: an address that is taken or wrong fails the run with nothing attached.
    std::unique_ptr<MetricsServer> metrics;
    const std::string pin_dir = PinDir(options.pin_dir).path();
    if (!metrics_address.empty())
        metrics = std::make_unique<MetricsServer>(metrics_address, [pin_dir] { return prometheus_metrics(pin_dir); });

    const auto r = attach_or_verdict(options);

    // The owner's lock: held on the published pin dir for as long as this process runs.
    Fd owner(::open(r.pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!owner)
        throw Error("opening " + r.pin_dir, errno);
    if (::flock(owner.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            throw Error("another sockredir-min run owns the attachment in " + r.pin_dir + "; left it as it is");
        throw Error("locking " + r.pin_dir, errno);
    }
    const uint32_t link_id = pinned_link_id(r.pin_dir);
    if (r.outcome == AttachOutcome::AlreadyAttached)
        say("already attached to " + r.cgroup + " (pins in " + r.pin_dir +
            "); adopting it: it is detached when this process stops");
    else
        say("attached to " + r.cgroup + " (pins in " + r.pin_dir + ")");
    if (!r.no_evict.empty())
        say(no_evict_note(r.no_evict));
    print_defect_warnings(r);
    if (metrics)
        say("serving metrics at http://" + metrics->bound() + "/metrics");
    say("running until SIGTERM or SIGINT");

    const int sig = wait_for_stop(stop, metrics.get());
    metrics.reset(); // no scrape during the detach
    say(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + "; detaching");

    const uint32_t now = pinned_link_id(r.pin_dir);
    if (now != 0 && now != link_id) {
        say("the pins in " + r.pin_dir + " now hold another attachment (link id " + std::to_string(now) +
            "); left it as it is");
        return;
    }
    const auto d = detach(r.pin_dir, detach_options);
    if (d.outcome == DetachOutcome::Detached)
        say("detached (removed " + d.pin_dir + ")" + evict_summary(d.evict));
    else
        say("already detached by someone else (no pins in " + d.pin_dir + "); nothing to do");
    if (const auto failure = evict_failure(d.evict, detach_options.timeout); !failure.empty())
        throw Error(failure);
}

} // namespace sockredir::app
