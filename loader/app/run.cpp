// run_foreground: the daemon's lifecycle; ownership of the attachment by a lock on its pin dir and its link id.
#include "loader/app/run.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <string>

#include "loader/app/checked_attach.hpp"
#include "loader/app/evict.hpp"
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

} // namespace

void run_foreground(const AttachOptions& options, const DetachOptions& detach_options)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &stop, nullptr) != 0)
        throw Error("blocking SIGTERM and SIGINT", errno);

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
    say("running until SIGTERM or SIGINT");

    int sig = 0;
    while ((sig = ::sigwaitinfo(&stop, nullptr)) < 0)
        if (errno != EINTR)
            throw Error("waiting for SIGTERM or SIGINT", errno);
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
