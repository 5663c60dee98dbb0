// sockredir-min's commands: parse strictly, run one verb, map errors to exit codes 1 and 2.
#include "loader/app/cli.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string_view>

#include "loader/app/attach.hpp"
#include "loader/app/check.hpp"
#include "loader/app/contract.hpp"
#include "loader/app/embedded.hpp"
#include "loader/app/status.hpp"
#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/mounts.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;
using base::parse_decimal;
using base::read_file_bytes;

const char* const kVersion = "sockredir-min " SOCKREDIR_VERSION;

const char* const kUsage =
    "usage: sockredir-min attach [--cgroup DIR] [--pin-dir DIR] [--object FILE] [--max-sockets N] [--ports LIST]\n"
    "       sockredir-min detach [--pin-dir DIR]\n"
    "       sockredir-min status [--pin-dir DIR] [--json]\n"
    "       sockredir-min check\n"
    "       sockredir-min run [--cgroup DIR] [--pin-dir DIR] [--object FILE] [--max-sockets N] [--ports LIST]\n"
    "       sockredir-min ports [--pin-dir DIR] LIST|all\n"
    "       sockredir-min --help | --version\n"
    "\n"
    "Redirects TCP data between sockets on this host straight into the peer socket\n"
    "(sock_ops + sk_msg, SOCKHASH), skipping the TCP/IP stack.\n"
    "\n"
    "  attach   load the programs, attach them to the cgroup (default: the cgroup2\n"
    "           root) and pin them under the pin dir (default /sys/fs/bpf/sockredir)\n"
    "  detach   stop redirecting and remove everything attach created\n"
    "  status   show whether it is attached, ids, sockets in the map and counters\n"
    "  check    tell whether this kernel can run sockredir: one line per feature, a verdict\n"
    "  run      attach, stay in the foreground until SIGTERM or SIGINT, then detach\n"
    "  ports    change the port selection of the attachment, live: connections\n"
    "           established from now on follow it, established ones keep their path\n"
    "\n"
    "  --ports LIST  accelerate only connections with a local or remote port in LIST\n"
    "                (like 6379,5432,8000-8100); default: every same-host connection\n"
    "\n"
    "Exit codes: 0 success, 1 failure (reason on stderr), 2 usage error.\n";

namespace {

ParseResult usage_error(const std::string& message)
{
    ParseResult r;
    r.error = message + " (see sockredir-min --help)";
    return r;
}

} // namespace

ParseResult parse_command_line(const std::vector<std::string>& args)
{
    if (args.empty())
        return usage_error("missing command");
    Command c;
    const std::string& verb = args[0];
    if (verb == "--help" || verb == "-h" || verb == "help") {
        if (args.size() > 1)
            return usage_error("unexpected argument '" + args[1] + "'");
        c.verb = Verb::Help;
        return {c, {}};
    }
    if (verb == "--version" || verb == "-V") {
        if (args.size() > 1)
            return usage_error("unexpected argument '" + args[1] + "'");
        c.verb = Verb::Version;
        return {c, {}};
    }
    if (verb == "attach")
        c.verb = Verb::Attach;
    else if (verb == "detach")
        c.verb = Verb::Detach;
    else if (verb == "status")
        c.verb = Verb::Status;
    else if (verb == "check")
        c.verb = Verb::Check;
    else if (verb == "run")
        c.verb = Verb::Run;
    else if (verb == "ports")
        c.verb = Verb::Ports;
    else
        return usage_error("unknown command '" + verb + "'");

    bool have_selection = false; // ports: its one argument
    for (size_t i = 1; i < args.size(); ++i) {
        std::string opt = args[i];
        if (c.verb == Verb::Ports && !have_selection && !opt.empty() && opt[0] != '-') {
            have_selection = true;
            if (opt == "all")
                continue; // c.ports stays empty: every port
            const auto ports = parse_ports(opt);
            if (!ports)
                return usage_error("ports needs a list of ports 1-65535 and ranges, like 80,443,8000-8100, or all");
            c.ports = *ports;
            continue;
        }
        std::string value;
        bool has_value = false;
        if (opt.rfind("--", 0) == 0) {
            const auto eq = opt.find('=');
            if (eq != std::string::npos) {
                value = opt.substr(eq + 1);
                opt = opt.substr(0, eq);
                has_value = true;
            }
        }
        if (opt == "--help" || opt == "-h") {
            c.verb = Verb::Help;
            return {c, {}};
        }
        const bool takes_value =
            opt == "--pin-dir" || opt == "--cgroup" || opt == "--object" || opt == "--max-sockets" || opt == "--ports";
        const bool attaches = c.verb == Verb::Attach || c.verb == Verb::Run;
        const bool allowed =
            (opt == "--pin-dir" && c.verb != Verb::Check) ||
            (attaches && (opt == "--cgroup" || opt == "--object" || opt == "--max-sockets" || opt == "--ports")) ||
            (c.verb == Verb::Status && opt == "--json");
        if (!allowed) {
            if (opt.rfind("-", 0) == 0)
                return usage_error("unknown option '" + opt + "' for " + verb);
            return usage_error("unexpected argument '" + opt + "'");
        }
        if (takes_value && !has_value) {
            if (i + 1 >= args.size())
                return usage_error("option " + opt + " needs a value");
            value = args[++i];
        }
        if (!takes_value && has_value)
            return usage_error("option " + opt + " takes no value");
        if (takes_value && value.empty())
            return usage_error("option " + opt + " needs a non-empty value");
        if (opt == "--pin-dir") {
            if (value[0] != '/')
                return usage_error("--pin-dir needs an absolute path");
            c.pin_dir = value;
        } else if (opt == "--cgroup") {
            c.cgroup = value;
        } else if (opt == "--object") {
            c.object_file = value;
        } else if (opt == "--ports") {
            const auto ports = parse_ports(value);
            if (!ports)
                return usage_error("--ports needs a list of ports 1-65535 and ranges, like 80,443,8000-8100");
            c.ports = *ports;
        } else if (opt == "--max-sockets") {
            const auto n = parse_decimal(value);
            if (!n || *n == 0 || *n > kMaxSockets)
                return usage_error("--max-sockets needs a number from 1 to " + std::to_string(kMaxSockets));
            c.max_sockets = *n;
        } else if (opt == "--json") {
            c.json = true;
        }
    }
    if (c.verb == Verb::Ports && !have_selection)
        return usage_error("ports needs a list of ports (like 80,443,8000-8100) or all");
    return {c, {}};
}

// What the operator can do about a kernel refusal, by the errno the kernel chose.
std::string describe_error(const Error& e)
{
    std::string msg = e.what();
    const bool from_bpf = msg.rfind("BPF_", 0) == 0;
    switch (e.code()) {
    case EPERM:
        // What bpf(2) and mount(2) say without privileges (EACCES is the verifier's).
        msg += " (needs root: CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)";
        break;
    case ENOMEM:
        // Map memory is charged to the memory cgroup of the process that creates the map.
        msg += " (the kernel could not allocate it: lower --max-sockets or raise this process's memory limit)";
        break;
    case E2BIG:
        // bpf(2) says E2BIG when the request has fields this kernel does not know.
        msg += " (this kernel is older than sockredir needs: Linux 5.15 or newer)";
        break;
    case EINVAL:
        if (from_bpf)
            msg += " (this kernel lacks a feature sockredir needs: Linux 5.15+, CONFIG_CGROUP_BPF, "
                   "CONFIG_NET_SOCK_MSG)";
        break;
    case ENOSYS:
        msg += " (this kernel has no bpf(2): CONFIG_BPF_SYSCALL is off)";
        break;
    default:
        break;
    }
    return msg;
}

namespace {

// Linux version of the running kernel as major * 1000 + minor, 0 when unknown.
unsigned kernel_version()
{
    struct utsname u {};
    if (::uname(&u) != 0)
        return 0;
    // "MAJOR.MINOR..." by hand: sscanf would link glibc's scanf engine, a tenth of this static binary.
    const std::string_view release(u.release);
    const auto dot = release.find('.');
    if (dot == std::string_view::npos)
        return 0;
    const auto rest = release.substr(dot + 1);
    const auto major = parse_decimal(release.substr(0, dot));
    const auto minor = parse_decimal(rest.substr(0, rest.find_first_not_of("0123456789")));
    if (!major || !minor || *major > 1000 || *minor > 999)
        return 0;
    return *major * 1000 + *minor;
}

// attach and run refuse, with check's verdict, on a kernel (or for a caller) that cannot run sockredir: one line
// instead of whichever step failed first. Where that is to be expected (not root, a kernel older than 5.15) the
// probes run first and the refusal comes before anything is touched. Elsewhere they run only once something has
// failed, so a capable kernel pays nothing for them (they cost more than the attach itself); attach takes down
// whatever a failed step had created, so that refusal too leaves the system as it was.
AttachResult attach_or_verdict(const AttachOptions& options)
{
    const auto refuse_unless_capable = [] {
        const auto report = probe_kernel(embedded_object());
        if (!can_run(report))
            throw Error(verdict(report) + "; see sockredir-min check");
    };
    if (::geteuid() != 0 || kernel_version() < 5015)
        refuse_unless_capable();
    try {
        return attach(options);
    } catch (const Error&) {
        refuse_unless_capable();
        throw;
    }
}

// The attach options of a command; `file` keeps an --object file's bytes alive.
AttachOptions attach_options(const Command& c, std::vector<std::byte>& file)
{
    AttachOptions o;
    o.cgroup = c.cgroup;
    o.pin_dir = c.pin_dir;
    o.max_sockets = c.max_sockets;
    o.ports = c.ports;
    if (!c.object_file.empty()) {
        file = read_file_bytes(c.object_file);
        o.object = file;
    } else {
        o.object = embedded_object();
    }
    return o;
}

// The id of the cgroup link pinned in pin_dir, 0 when none is.
uint32_t pinned_link_id(const std::string& pin_dir)
{
    const std::string path = pin_dir + "/" + kPinLink;
    if (::access(path.c_str(), F_OK) != 0)
        return 0;
    return sys::link_info(sys::obj_get(path).get()).id;
}

void say(const std::string& line)
{
    std::fputs((line + "\n").c_str(), stdout);
    std::fflush(stdout); // a journal or a pipe reads it now, not at exit
}

// `run`: attach, wait for SIGTERM or SIGINT, detach. The stop signals are blocked before attach, so one that
// arrives during attach is taken right after it, and never interrupts a half-done attach.
//
// Found attached to the same cgroup already (a run that was killed, or an operator's attach), it adopts the
// attachment and detaches it when it stops; a live `run` on the same pin dir holds a lock on it, and a second one
// is refused. At the stop it detaches only the attachment it attached or adopted (same link id).
int run_foreground(const Command& c)
{
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &stop, nullptr) != 0)
        throw Error("blocking SIGTERM and SIGINT", errno);

    std::vector<std::byte> file;
    const auto r = attach_or_verdict(attach_options(c, file));

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
        return kExitOk;
    }
    const auto d = detach(r.pin_dir);
    if (d.outcome == DetachOutcome::Detached)
        say("detached (removed " + d.pin_dir + ")");
    else
        say("already detached by someone else (no pins in " + d.pin_dir + "); nothing to do");
    return kExitOk;
}

} // namespace

int run(const Command& c)
{
    try {
        switch (c.verb) {
        case Verb::Help:
            std::fputs(kUsage, stdout);
            return kExitOk;
        case Verb::Version:
            std::printf("%s\n", kVersion);
            return kExitOk;
        case Verb::Attach: {
            std::vector<std::byte> file;
            const auto r = attach_or_verdict(attach_options(c, file));
            if (r.outcome == AttachOutcome::AlreadyAttached)
                std::printf("already attached to %s (pins in %s); nothing changed\n", r.cgroup.c_str(),
                            r.pin_dir.c_str());
            else
                std::printf("attached to %s (pins in %s)\n", r.cgroup.c_str(), r.pin_dir.c_str());
            return kExitOk;
        }
        case Verb::Detach: {
            const auto r = detach(c.pin_dir);
            if (r.cleaned_stale > 0)
                std::printf("removed %d stale set(s) of pins left by an interrupted attach\n", r.cleaned_stale);
            if (r.outcome == DetachOutcome::Detached)
                std::printf("detached (removed %s)\n", r.pin_dir.c_str());
            else
                std::printf("not attached (no pins in %s); nothing to do\n", r.pin_dir.c_str());
            return kExitOk;
        }
        case Verb::Status: {
            const auto s = read_status(c.pin_dir);
            std::fputs((c.json ? format_json(s) : format_text(s)).c_str(), stdout);
            return kExitOk;
        }
        case Verb::Check: {
            const auto report = probe_kernel(embedded_object());
            std::fputs(format_report(report).c_str(), stdout);
            if (can_run(report))
                return kExitOk;
            std::fflush(stdout);
            std::fprintf(stderr, "sockredir-min: %s\n", verdict(report).c_str());
            return kExitFailure;
        }
        case Verb::Run:
            return run_foreground(c);
        case Verb::Ports: {
            const auto r = set_ports(c.pin_dir, c.ports);
            switch (r.outcome) {
            case PortsOutcome::NotAttached:
                throw Error("not attached (no pins in " + r.pin_dir + ")");
            case PortsOutcome::Unchanged:
                std::printf("ports: %s (unchanged)\n", r.after.c_str());
                return kExitOk;
            case PortsOutcome::Changed:
                std::printf("ports: %s (was %s); new connections follow it, established ones keep their path\n",
                            r.after.c_str(), r.before.c_str());
                return kExitOk;
            }
            return kExitFailure;
        }
        }
    } catch (const Error& e) {
        if (!e.log().empty()) {
            // The verifier's own words travel in the error; the command line is where they are shown.
            std::fputs("--- verifier log ---\n", stderr);
            std::fputs(e.log().c_str(), stderr);
            if (e.log().back() != '\n')
                std::fputc('\n', stderr);
            std::fputs("--- end of verifier log ---\n", stderr);
        }
        std::fprintf(stderr, "sockredir-min: %s\n", describe_error(e).c_str());
        return kExitFailure;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sockredir-min: internal error: %s\n", e.what());
        return kExitFailure;
    }
    return kExitFailure;
}

} // namespace sockredir::app
