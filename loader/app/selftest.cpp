// The live self-tests: a forked child in namespaces of its own runs each probe on a loopback pair and sends a record
// per finding through a pipe; the parent reads them within a deadline and removes what the child made, by its pid.
#include "loader/app/selftest.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h> // SIOCINQ
#include <linux/tcp.h>     // struct tcp_info with tcpi_bytes_received (glibc's <netinet/tcp.h> has not)
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <string_view>
#include <utility>

#include "bpf/sockredir_shared.h"
#include "loader/app/attach.hpp"
#include "loader/app/contract.hpp"
#include "loader/app/status.hpp"
#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/features.hpp"
#include "loader/ebpf/mounts.hpp"
#include "loader/ebpf/pin.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;

namespace {

constexpr DefectSpec kDefects[] = {
    {"blocking-read-eagain", SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN,
     "returns EAGAIN to a blocking recv() that a signal or a state change wakes without data (TCP keeps waiting)",
     "a blocking reader already waiting in recv() when sockredir takes its connection off the map (the first read "
     "of a server's end, a client that connects non-blocking and then reads blocking, like hiredis)",
     false, false},
    {"close-unread-fin", SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN,
     "ends a connection closed with redirected bytes unread by a FIN, not a reset (the peer reads EOF where TCP "
     "gives ECONNRESET)",
     "applications that rely on a reset when the peer closes with data unread", true, true},
    {"fionread-redirected", SOCKREDIR_DEFECT_FIONREAD,
     "leaves redirected bytes out of FIONREAD (SIOCINQ): it says 0 while they wait",
     "applications that size reads with FIONREAD", true, true},
    // The getsockopt hook of sockredir's object adds the redirected bytes where it links: then the probe, which
    // attaches that object, finds this absent.
    {"tcp-info-bytes", SOCKREDIR_DEFECT_TCP_INFO_BYTES,
     "leaves redirected bytes out of TCP_INFO (tcpi_bytes_received stays still), and sockredir's getsockopt hook "
     "does not add them here",
     "applications and monitoring that count a connection's bytes with TCP_INFO", true, true},
    // The observer takes a connection off redirection once it sees a MSG_TRUNC read: too late for the bytes already
    // redirected, which that read meets.
    {"msg-trunc-ignored", SOCKREDIR_DEFECT_MSG_TRUNC,
     "ignores MSG_TRUNC for redirected bytes: recv(NULL, n, MSG_TRUNC) fails with EFAULT and discards nothing (TCP "
     "discards n bytes)",
     "readers that skip bytes they do not want with recv(NULL, n, MSG_TRUNC)", true, true},
    {"shutdown-rd-readable", SOCKREDIR_DEFECT_SHUTDOWN_RD,
     "keeps bytes redirected after shutdown(SHUT_RD) readable where TCP drops them (recv() returns 0)",
     "readers that shut down their reading side and rely on recv() returning 0 from then on, whatever the peer "
     "sends",
     true, true},
    {"oob-inline", SOCKREDIR_DEFECT_OOB_INLINE,
     "delivers a send(MSG_OOB) byte in line as an ordinary byte: no urgent mark, no POLLPRI, SIOCATMARK never 1, "
     "recv(MSG_OOB) does not return it",
     "applications that use TCP urgent data (telnet's and rlogin's interrupts, FTP's ABOR, SIOCATMARK, "
     "SO_OOBINLINE)",
     true, true},
    {"splice-misses-redirected", SOCKREDIR_DEFECT_SPLICE,
     "keeps redirected bytes from splice(): splicing the socket into a pipe finds nothing while they wait (TCP "
     "splices them)",
     "readers and proxies that move a socket's bytes with splice() (haproxy's splice options, zero-copy relays)", true,
     true},
};
constexpr size_t kCount = std::size(kDefects);
// Where check's lines put the state: two spaces in, then the longest name and two spaces.
constexpr size_t kNameColumn = [] {
    size_t longest = 0;
    for (const auto& d : kDefects)
        longest = std::max(longest, std::string_view(d.name).size());
    return 2 + longest + 2;
}();
static_assert(kCount == kDefectCount, "SelfTestReport has a finding per row");
static_assert(kCount <= SOCKREDIR_DEFECT_PROBED_SHIFT, "a bit each, present and probed, in one word");
// The rows by position, for the probes that report them.
enum Row : size_t { kBlockingRead, kCloseUnread, kFionread, kTcpInfo, kMsgTrunc, kShutdownRd, kOob, kSplice };
static_assert(kDefects[kBlockingRead].bit == SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN &&
              kDefects[kCloseUnread].bit == SOCKREDIR_DEFECT_CLOSE_UNREAD_FIN &&
              kDefects[kFionread].bit == SOCKREDIR_DEFECT_FIONREAD &&
              kDefects[kTcpInfo].bit == SOCKREDIR_DEFECT_TCP_INFO_BYTES &&
              kDefects[kMsgTrunc].bit == SOCKREDIR_DEFECT_MSG_TRUNC &&
              kDefects[kShutdownRd].bit == SOCKREDIR_DEFECT_SHUTDOWN_RD &&
              kDefects[kOob].bit == SOCKREDIR_DEFECT_OOB_INLINE && kDefects[kSplice].bit == SOCKREDIR_DEFECT_SPLICE &&
              kCount == 8);

// Every name of the child's making: "/tmp/<prefix><pid>" (its mount points) and "<cgroup2>/<prefix><pid>".
constexpr const char* kPrefix = "sockredir-selftest-";
constexpr const char* kTmp = "/tmp/";

// fork(2) for a process that has no other thread: glibc's _Fork (2.34+) skips the atfork machinery, 5 KB of the
// static binary that a single-threaded program does not need.
pid_t fork_single_threaded()
{
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
    return ::_Fork();
#else
    return ::fork();
#endif
}

std::string name_of(pid_t pid)
{
    return kPrefix + std::to_string(pid);
}

long long now_us()
{
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

// Every failure of the child's steps: "CALL WHAT: strerror(errno)", or WHAT alone without a call. One place that
// builds the strings, not one per step.
[[noreturn]] [[gnu::noinline]] void fail(const char* call, const char* what)
{
    if (call == nullptr)
        throw Error(what);
    throw Error(call, what, errno);
}
[[noreturn]] [[gnu::noinline]] void fail(const char* call, const std::string& what)
{
    fail(call, what.c_str());
}

// rmdir, waiting out the moment a cgroup whose last process just left stays busy. False when it is still there.
bool remove_dir(const std::string& path)
{
    for (int i = 0; i < 100; ++i) {
        if (::rmdir(path.c_str()) == 0 || errno == ENOENT)
            return true;
        if (errno != EBUSY)
            return false;
        ::usleep(2000);
    }
    return false;
}

void write_text(const std::string& path, const std::string& text)
{
    Fd f(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!f || ::write(f.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        fail("write", path);
}

// Mounts made from here on stay in this process's own mount namespace and go with it.
void private_mounts()
{
    if (::unshare(CLONE_NEWNS) != 0)
        fail("unshare", "a mount namespace");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        fail("mount", "making / private");
}

void mount_at(const std::string& dir, const char* type, const char* data)
{
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        fail("mkdir", dir);
    if (::mount(type, dir.c_str(), type, MS_NOSUID | MS_NODEV | MS_NOEXEC, data) != 0)
        fail("mount", dir); // the mount point says which: .../bpffs, .../cgroup2
}

std::optional<std::string> host_cgroup2()
{
    try {
        return ebpf::find_cgroup2_mount(base::read_file_text("/proc/self/mountinfo"));
    } catch (const Error&) {
        return std::nullopt;
    }
}

// What a child of `pid` may have left: its cgroup (unless it said it removed it), and the mount points under /tmp
// (their mounts went with its mount namespace). Where no cgroup2 is mounted here, the child mounted its own: a cgroup
// it could not remove is out of sight until cgroup2 is mounted (attach mounts it), and the first run after that
// removes it (remove_stale).
void remove_leftovers(pid_t pid, bool cgroup_removed)
{
    const std::string name = name_of(pid);
    const std::string tmp = kTmp + name;
    if (const auto root = host_cgroup2(); root && !cgroup_removed)
        remove_dir(*root + "/" + name);
    for (const char* sub : {"/cgroup2", "/bpffs", ""})
        ::rmdir((tmp + sub).c_str());
}

// Whether `pid` is gone: no such process, or a zombie that nobody reaped yet (an init that reaps late).
bool gone(pid_t pid)
{
    if (::kill(pid, 0) != 0)
        return errno == ESRCH;
    // "PID (COMM) STATE ...": the state follows the last ')'.
    char buf[256];
    std::snprintf(buf, sizeof buf, "/proc/%d/stat", static_cast<int>(pid));
    const Fd f(::open(buf, O_RDONLY | O_CLOEXEC));
    const ssize_t n = f ? ::read(f.get(), buf, sizeof buf) : -1;
    for (ssize_t i = n - 3; i >= 0; --i)
        if (buf[i] == ')')
            return buf[i + 2] == 'Z';
    return n < 0; // gone since
}

// Leftovers of runs whose parent was killed before it could clean up (its child died with it: PR_SET_PDEATHSIG).
void remove_stale()
{
    for (const std::string& dir : {std::string(kTmp), host_cgroup2().value_or("")}) {
        try {
            for (const auto& n : ebpf::list_dir(dir.empty() ? "/nonexistent" : dir)) {
                const auto pid = base::parse_decimal(std::string_view(n).substr(n.starts_with(kPrefix) ? 19 : 0));
                static_assert(std::string_view(kPrefix).size() == 19);
                if (n.starts_with(kPrefix) && pid && *pid > 0 && *pid < (1U << 22) && gone(static_cast<pid_t>(*pid)))
                    remove_leftovers(static_cast<pid_t>(*pid), false);
            }
        } catch (const Error&) {
        }
    }
}

// --- the child -------------------------------------------------------------------------------------------------------

// One message of the child, in one write(2) under PIPE_BUF, read whole: a finding ('F': row, state and what the probe
// saw), a stop ('X': why the rest cannot run) or 'C' (its cgroup is removed).
struct Record {
    char kind;
    uint8_t row;
    uint8_t state;
    char text[509];
};

// The child's half of the pipe.
class Reporter {
public:
    explicit Reporter(int fd) : fd_(fd) {}
    void finding(size_t row, DefectState state, const char* detail) const { send('F', row, state, detail); }
    void stop(const char* why) const { send('X', 0, DefectState::NotProbed, why); }
    void cgroup_removed() const { send('C', 0, DefectState::NotProbed, ""); }

private:
    void send(char kind, size_t row, DefectState state, const char* text) const
    {
        Record r{kind, static_cast<uint8_t>(row), static_cast<uint8_t>(state), {}};
        // Not strncpy: static glibc would link each of its CPU variants.
        std::memcpy(r.text, text, std::min(std::strlen(text), sizeof r.text - 1));
        (void)!::write(fd_, &r, sizeof r);
    }
    int fd_;
};

void loopback_up()
{
    // A new network namespace has lo down; up, it has 127.0.0.1. No `ip` binary: an initramfs has none.
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, "lo", 3);
    if (!s || ::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0)
        fail("ioctl", "SIOCGIFFLAGS lo");
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0)
        fail("ioctl", "SIOCSIFFLAGS lo");
}

// The child's cgroup: made under the cgroup2 root (mounted in its own mount namespace where none is) and joined, so
// that every socket it makes is in it; left for the root and removed when the probes are done.
class ProbeCgroup {
public:
    ProbeCgroup(const Reporter& rep, const std::string& tmp) : rep_(rep)
    {
        std::string root;
        if (const auto found = host_cgroup2()) {
            root = *found;
        } else {
            mount_at(tmp + "/cgroup2", "cgroup2", nullptr);
            root = tmp + "/cgroup2";
        }
        // Where this process goes before removing its cgroup: the root takes any process.
        root_ = root;
        path_ = root + "/" + name_of(::getpid());
        if (::mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST)
            fail("mkdir", path_);
        write_text(path_ + "/cgroup.procs", "0"); // "0": the writer itself
    }
    ~ProbeCgroup()
    {
        try {
            write_text(root_ + "/cgroup.procs", "0");
        } catch (const Error&) {
        }
        if (remove_dir(path_)) // else the parent tries again once this process is gone
            rep_.cgroup_removed();
    }
    ProbeCgroup(const ProbeCgroup&) = delete;
    ProbeCgroup& operator=(const ProbeCgroup&) = delete;
    const std::string& path() const { return path_; }

private:
    const Reporter& rep_;
    std::string root_;
    std::string path_;
};

bool wait_for(int fd, short events, int timeout_ms)
{
    pollfd p{fd, events, 0};
    int r = 0;
    while ((r = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    return r > 0;
}

struct Pair {
    Fd reader; // the server's end (accepted)
    Fd writer; // the client's end
};

// A connected pair on 127.0.0.1. Non-blocking ends are what sockredir takes into its map (a blocking client stays
// off it), and are read as an event loop reads them.
Pair loopback_pair(bool nonblocking)
{
    const int nb = nonblocking ? SOCK_NONBLOCK : 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    auto* sa = reinterpret_cast<sockaddr*>(&addr);
    Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener || ::bind(listener.get(), sa, sizeof addr) != 0 || ::listen(listener.get(), 1) != 0 ||
        ::getsockname(listener.get(), sa, &len) != 0)
        fail("listen", "on 127.0.0.1");
    Pair p;
    p.writer = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | nb, 0));
    if (!p.writer || (::connect(p.writer.get(), sa, sizeof addr) != 0 && errno != EINPROGRESS))
        fail("connect", "to 127.0.0.1");
    if (!wait_for(p.writer.get(), POLLOUT, 1000) || !wait_for(listener.get(), POLLIN, 1000))
        fail(nullptr, "a loopback connection was not established within 1 s");
    p.reader = Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | nb));
    if (!p.reader)
        fail("accept4", "on 127.0.0.1");
    return p;
}

// --- probe: blocking-read-eagain -------------------------------------------------------------------------------------

constexpr int kTicks = 30; // timer periods of 1 ms the reader waits before its byte comes
volatile sig_atomic_t g_ticks = 0;
int g_peer = -1;

void on_tick(int)
{
    // The byte the reader waits for: its recv() returns on every kernel once it has sat through kTicks signals.
    const int saved = errno;
    const int ticks = g_ticks + 1;
    g_ticks = ticks;
    if (ticks == kTicks)
        (void)::send(g_peer, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    errno = saved;
}

// A blocking recv() on a socket in a sockhash (inserted from user space: insertion alone gives it tcp_bpf_recvmsg,
// no program needed) while 1 ms SA_RESTART timer signals arrive: TCP restarts the call unseen, the stock sockmap
// path returns EAGAIN from it (kernel-notes.md section 1).
void probe_blocking_read(const Reporter& rep)
{
    Pair p = loopback_pair(false);
    Fd map = sys::map_create({.type = BPF_MAP_TYPE_SOCKHASH,
                              .key_size = 4,
                              .value_size = 4,
                              .max_entries = 1,
                              .name = ebpf::kProbeObjectName});
    const uint32_t key = 0;
    const uint32_t fd = static_cast<uint32_t>(p.reader.get());
    sys::map_update(map.get(), &key, &fd, BPF_ANY);

    g_ticks = 0;
    g_peer = p.writer.get();
    struct sigaction tick {
    }, old{};
    tick.sa_handler = on_tick;
    tick.sa_flags = SA_RESTART;
    sigemptyset(&tick.sa_mask);
    sigset_t alarm, mask;
    sigemptyset(&alarm);
    sigaddset(&alarm, SIGALRM);
    ::sigaction(SIGALRM, &tick, &old);
    ::sigprocmask(SIG_UNBLOCK, &alarm, &mask);
    const itimerval every_ms{{0, 1000}, {0, 1000}}, off{};
    ::setitimer(ITIMER_REAL, &every_ms, nullptr);
    const long long start = now_us();
    unsigned eagain = 0, eintr = 0;
    int err = 0;
    ssize_t n = -1;
    char c = 0;
    while (now_us() - start < 1000000) {
        n = ::recv(p.reader.get(), &c, 1, 0);
        if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
            err = n < 0 ? errno : 0;
            break;
        }
        ++(errno == EAGAIN ? eagain : eintr);
    }
    const unsigned ms = static_cast<unsigned>((now_us() - start) / 1000);
    ::setitimer(ITIMER_REAL, &off, nullptr);
    ::sigprocmask(SIG_SETMASK, &mask, nullptr);
    ::sigaction(SIGALRM, &old, nullptr);

    char text[200];
    std::snprintf(text, sizeof text,
                  "%u EAGAIN, %u EINTR in %u ms of 1 ms timer signals (TCP: none, it restarts the recv())", eagain,
                  eintr, ms);
    if (n != 1)
        std::snprintf(text, sizeof text, "the blocking recv() returned %zd (%s) after %u ms", n,
                      n < 0 ? std::strerror(err) : "no byte", ms);
    rep.finding(kBlockingRead,
                n != 1               ? DefectState::NotProbed
                : eagain + eintr > 0 ? DefectState::Present
                                     : DefectState::Absent,
                text);
}

// --- probes through sockredir's own attachment -----------------------------------------------------------------------

constexpr unsigned kBytes = 1000;

uint64_t tcp_bytes_received(int fd)
{
    tcp_info info{};
    socklen_t len = sizeof info; // tcpi_bytes_received is there from Linux 4.1
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        fail("getsockopt", "TCP_INFO");
    return info.tcpi_bytes_received;
}

// One byte each way, each read non-blocking once it is there: both readers are then known to read in a way the
// redirect path serves, and have read everything sent by TCP, so the next bytes are redirected (README "How it
// decides").
void warm_up(const Pair& p)
{
    char c = 'w';
    for (const auto& [from, to] : {std::pair{p.writer.get(), p.reader.get()}, {p.reader.get(), p.writer.get()}})
        if (::send(from, &c, 1, MSG_NOSIGNAL) != 1 || !wait_for(to, POLLIN, 1000) ||
            ::recv(to, &c, 1, MSG_DONTWAIT) != 1)
            fail("send/recv", "the warm-up byte");
}

// sockredir attached to the child's cgroup, on the child's own bpffs; a probe proves through its counters that the
// bytes it looks at were redirected, so that what it sees is the sockmap path's and not TCP's.
class Attachment {
public:
    Attachment(std::span<const std::byte> object, const std::string& cgroup, const std::string& tmp)
    {
        mount_at(tmp + "/bpffs", "bpf", "mode=0700");
        AttachOptions options;
        options.cgroup = cgroup;
        options.pin_dir = tmp + "/bpffs/sockredir";
        options.object = object;
        char text[400];
        try {
            result_ = attach(options);
        } catch (const Error& e) {
            std::snprintf(text, sizeof text, "attaching sockredir to the probe's cgroup: %s", e.what());
            fail(nullptr, text);
        }
        if (result_.observer.empty()) {
            std::snprintf(text, sizeof text, "no receive-path observer loads here, so nothing is redirected (%s)",
                          result_.no_observer_reason.c_str());
            fail(nullptr, text);
        }
    }
    // No detach: the pins are on this process's own bpffs, which goes with its mount namespace, and the links with
    // them.

    // sockredir's own count of the bytes it redirected, as status shows it, and those the socket `fd` redirected that
    // it has not handed to the counters yet (sockredir_sock.pending_bytes: socket storage is looked up by fd).
    uint64_t redirected(int fd) const
    {
        uint64_t n = read_counter(result_.pin_dir, SOCKREDIR_BYTES_REDIRECTED);
        const base::Fd state = ebpf::sys::obj_get(result_.pin_dir + "/" + SOCKREDIR_MAP_SOCK_STATE);
        sockredir_sock me{};
        const int key = fd;
        if (ebpf::sys::map_lookup(state.get(), &key, &me))
            n += me.pending_bytes;
        return n;
    }

    // "" when the option hook `program` (kOptionHooks) is linked, else why not.
    std::string hook_missing(std::string_view program) const
    {
        for (const auto& why : result_.missing_hooks)
            if (why.starts_with(program))
                return why;
        for (const auto& hook : kOptionHooks)
            if (program == hook.program && ebpf::pin_exists(result_.pin_dir + "/" + hook.link_pin))
                return "";
        return std::string(program) + " is not in the object";
    }

    // A pair whose next bytes each way are redirected (warm_up).
    Pair pair() const
    {
        Pair p = loopback_pair(true);
        warm_up(p);
        return p;
    }

    // Sends `len` bytes and proves that sockredir redirected all of them: it does so within the send(), which queues
    // them on the reader's side before it returns.
    void send_redirected(int fd, const void* data, size_t len, int flags, const char* what) const
    {
        const uint64_t before = redirected(fd);
        if (::send(fd, data, len, flags | MSG_NOSIGNAL) != static_cast<ssize_t>(len))
            fail("send", what);
        if (const uint64_t moved = redirected(fd) - before; moved < len) {
            char text[200];
            std::snprintf(text, sizeof text, "%s took TCP: sockredir redirected %llu of its %zu bytes", what,
                          static_cast<unsigned long long>(moved), len);
            fail(nullptr, text);
        }
    }

private:
    AttachResult result_;
};

// fionread-redirected, tcp-info-bytes and close-unread-fin on one pair: 1000 redirected bytes left unread, counted,
// then closed.
void probe_unread(const Reporter& rep, const Attachment& a)
{
    Pair p = a.pair();
    const uint64_t tcp_before = tcp_bytes_received(p.reader.get());
    char bytes[kBytes];
    std::memset(bytes, 'r', sizeof bytes);
    a.send_redirected(p.writer.get(), bytes, sizeof bytes, 0, "1000 bytes sent");
    if (!wait_for(p.reader.get(), POLLIN, 1000))
        fail(nullptr, "1000 bytes redirected were not readable within 1 s");

    char text[400];
    int inq = -1;
    if (::ioctl(p.reader.get(), SIOCINQ, &inq) != 0)
        fail("ioctl", "FIONREAD");
    std::snprintf(text, sizeof text, "FIONREAD says %d with %u redirected bytes unread", inq, kBytes);
    rep.finding(kFionread, inq == static_cast<int>(kBytes) ? DefectState::Absent : DefectState::Present, text);

    // TCP's own count leaves redirected bytes out on every kernel; what an application sees is what the getsockopt
    // hook makes of it, where it links.
    const uint64_t counted = tcp_bytes_received(p.reader.get()) - tcp_before;
    const std::string missing = a.hook_missing(SOCKREDIR_PROG_GETSOCKOPT);
    std::snprintf(text, sizeof text, "tcpi_bytes_received moved by %llu for %u redirected bytes (%s)",
                  static_cast<unsigned long long>(counted), kBytes,
                  !missing.empty()    ? missing.c_str()
                  : counted >= kBytes ? "sockredir's getsockopt hook adds them"
                                      : "sockredir's getsockopt hook is linked, yet does not add them");
    rep.finding(kTcpInfo, counted >= kBytes ? DefectState::Absent : DefectState::Present, text);

    p.reader.reset(); // closed with every redirected byte unread
    wait_for(p.writer.get(), POLLIN, 1000);
    char c = 0;
    const ssize_t n = ::recv(p.writer.get(), &c, 1, MSG_DONTWAIT);
    const int err = errno;
    if (n < 0 && err == ECONNRESET)
        rep.finding(kCloseUnread, DefectState::Absent, "the peer's recv() got ECONNRESET, as on TCP");
    else if (n == 0)
        rep.finding(kCloseUnread, DefectState::Present, "the peer's recv() read EOF where TCP gives ECONNRESET");
    else {
        std::snprintf(text, sizeof text, "the peer's recv() returned %zd (%s)", n, n < 0 ? std::strerror(err) : "data");
        rep.finding(kCloseUnread, DefectState::NotProbed, text);
    }
}

// "returned 100", "failed (Bad address)": one call's outcome, with the errno the caller took right after it.
std::string outcome(ssize_t n, int err)
{
    if (n >= 0)
        return "returned " + std::to_string(n);
    return std::string("failed (") + std::strerror(err) + ")";
}

// 300 redirected bytes, each its own offset (mod 251), so that a read says where it starts.
void fill_offsets(unsigned char* bytes, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        bytes[i] = static_cast<unsigned char>(i % 251);
}

// recv(NULL, 100, MSG_TRUNC): TCP discards 100 bytes and returns 100 (tcp_recvmsg skips the copy); the redirect path
// copies into the NULL buffer and fails. Then a read says whether anything was discarded.
void probe_msg_trunc(const Reporter& rep, const Attachment& a)
{
    Pair p = a.pair();
    unsigned char bytes[300];
    fill_offsets(bytes, sizeof bytes);
    a.send_redirected(p.writer.get(), bytes, sizeof bytes, 0, "300 bytes sent");
    if (!wait_for(p.reader.get(), POLLIN, 1000))
        fail(nullptr, "300 bytes redirected were not readable within 1 s");
    const ssize_t t = ::recv(p.reader.get(), nullptr, 100, MSG_TRUNC | MSG_DONTWAIT);
    const int err = errno;
    unsigned char buf[sizeof bytes];
    const ssize_t n = ::recv(p.reader.get(), buf, sizeof buf, MSG_DONTWAIT);
    char text[300];
    if (n <= 0) {
        std::snprintf(text, sizeof text, "recv(NULL, 100, MSG_TRUNC) %s, then the read %s", outcome(t, err).c_str(),
                      outcome(n, errno).c_str());
        rep.finding(kMsgTrunc, DefectState::NotProbed, text);
        return;
    }
    std::snprintf(text, sizeof text,
                  "recv(NULL, 100, MSG_TRUNC) %s with 300 redirected bytes unread, and the next read starts at byte %d "
                  "(TCP: returns 100, the next read starts at byte 100)",
                  outcome(t, err).c_str(), buf[0]);
    rep.finding(kMsgTrunc,
                t == 100 && buf[0] == 100 ? DefectState::Absent
                : buf[0] == 0             ? DefectState::Present
                                          : DefectState::NotProbed,
                text);
}

// The conformance suite's shutdown_rd_recv_nb on `p`, sending through `send_all`: 100 bytes read at once, the
// reader's shutdown(SHUT_RD), 100 more bytes sent; what recv() returns then (-1 with errno when it failed).
template <typename Send> ssize_t shutdown_rd_story(const Pair& p, Send send_all)
{
    char bytes[100];
    std::memset(bytes, 's', sizeof bytes);
    send_all(bytes, sizeof bytes, "100 bytes sent before shutdown(SHUT_RD)");
    if (!wait_for(p.reader.get(), POLLIN, 1000) || ::recv(p.reader.get(), bytes, sizeof bytes, MSG_DONTWAIT) != 100)
        fail("recv", "the 100 bytes sent before shutdown(SHUT_RD)");
    if (::shutdown(p.reader.get(), SHUT_RD) != 0)
        fail("shutdown", "SHUT_RD");
    send_all(bytes, sizeof bytes, "100 bytes sent after shutdown(SHUT_RD)");
    // No readiness to wait for: after SHUT_RD the reader always polls readable. Loopback TCP delivers within the
    // send() but for a softirq's delay, the redirect path within it.
    ::usleep(5000);
    char buf[sizeof bytes * 2];
    return ::recv(p.reader.get(), buf, sizeof buf, MSG_DONTWAIT);
}

// Bytes sent after the reader's shutdown(SHUT_RD) in the story above: TCP drops them (recv() returns 0; measured on
// 6.1, 6.12 and 6.18, though not in every timing: with a pause of 50 ms before the shutdown they stay readable on
// 6.18), the redirect path queues them for the reader all the same. TCP's half is told on this kernel too, before the
// attachment (tcp_recv), so that the probe compares like with like and claims nothing TCP does not do here.
void probe_shutdown_rd(const Reporter& rep, const Attachment& a, ssize_t tcp_recv)
{
    Pair p = a.pair();
    const ssize_t n = shutdown_rd_story(p, [&](const char* data, size_t len, const char* what) {
        a.send_redirected(p.writer.get(), data, len, 0, what);
    });
    char text[300];
    std::snprintf(text, sizeof text,
                  "recv() after shutdown(SHUT_RD) %s with 100 bytes redirected after it (TCP here, the same story: "
                  "%s)",
                  outcome(n, errno).c_str(), tcp_recv < 0 ? "could not be told" : outcome(tcp_recv, 0).c_str());
    rep.finding(kShutdownRd,
                tcp_recv != 0 ? DefectState::NotProbed
                : n == 0      ? DefectState::Absent
                : n == 100    ? DefectState::Present
                              : DefectState::NotProbed,
                text);
}

// TCP's half of probe_shutdown_rd, on a pair of plain TCP (nothing is attached yet): what recv() returned, -1 when
// the story could not be told.
ssize_t shutdown_rd_on_tcp()
{
    try {
        const Pair p = loopback_pair(true);
        warm_up(p);
        return std::max<ssize_t>(shutdown_rd_story(p,
                                                   [&](const char* data, size_t len, const char* what) {
                                                       if (::send(p.writer.get(), data, len, MSG_NOSIGNAL) !=
                                                           static_cast<ssize_t>(len))
                                                           fail("send", what);
                                                   }),
                                 -1);
    } catch (const Error&) {
        return -1;
    }
}

// 3 bytes, then one with MSG_OOB. TCP marks the urgent byte: POLLPRI, recv(MSG_OOB) returns it, the stream stops
// before it and SIOCATMARK then says 1 (conformance: oob_out_of_line). The redirect path queues it as the fourth
// in-line byte.
void probe_oob(const Reporter& rep, const Attachment& a)
{
    Pair p = a.pair();
    a.send_redirected(p.writer.get(), "abc", 3, 0, "3 bytes sent");
    a.send_redirected(p.writer.get(), "X", 1, MSG_OOB, "the urgent byte");
    wait_for(p.reader.get(), POLLIN | POLLPRI, 1000);
    pollfd pfd{p.reader.get(), POLLIN | POLLPRI, 0};
    ::poll(&pfd, 1, 0);
    char urgent = 0;
    const ssize_t u = ::recv(p.reader.get(), &urgent, 1, MSG_OOB | MSG_DONTWAIT);
    const int err = errno;
    char stream[16] = {};
    const ssize_t n = ::recv(p.reader.get(), stream, sizeof stream - 1, MSG_DONTWAIT);
    const std::string read = n > 0 ? "\"" + std::string(stream) + "\"" : outcome(n, errno);
    int mark = -1;
    if (::ioctl(p.reader.get(), SIOCATMARK, &mark) != 0)
        fail("ioctl", "SIOCATMARK");
    const bool in_line = n > 0 && std::memchr(stream, 'X', static_cast<size_t>(n)) != nullptr;
    const bool tcp = u == 1 && urgent == 'X' && !in_line;
    char text[400];
    std::snprintf(text, sizeof text,
                  "the urgent byte came %s: POLLPRI %s, recv(MSG_OOB) %s%s, the next read %s, SIOCATMARK %d after it "
                  "(TCP: POLLPRI, recv(MSG_OOB) returns \"X\", the read stops at \"abc\", SIOCATMARK 1)",
                  in_line ? "in line"
                  : tcp   ? "out of line"
                          : "neither in line nor out of line",
                  (pfd.revents & POLLPRI) ? "set" : "not set", outcome(u, err).c_str(),
                  u == 1 ? (std::string(" (\"") + urgent + "\")").c_str() : "", read.c_str(), mark);
    rep.finding(kOob, tcp ? DefectState::Absent : in_line ? DefectState::Present : DefectState::NotProbed, text);
}

// splice() from the socket into a pipe reads sk_receive_queue alone (tcp_splice_read), where redirected bytes never
// are; a recv() then shows they were there all along.
void probe_splice(const Reporter& rep, const Attachment& a)
{
    Pair p = a.pair();
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        fail("pipe2", "for splice");
    const Fd pipe_read(fds[0]), pipe_write(fds[1]);
    char bytes[kBytes];
    std::memset(bytes, 'p', sizeof bytes);
    a.send_redirected(p.writer.get(), bytes, sizeof bytes, 0, "1000 bytes sent");
    if (!wait_for(p.reader.get(), POLLIN, 1000))
        fail(nullptr, "1000 bytes redirected were not readable within 1 s");
    const ssize_t n = ::splice(p.reader.get(), nullptr, pipe_write.get(), nullptr, sizeof bytes, SPLICE_F_NONBLOCK);
    const int err = errno;
    char buf[sizeof bytes];
    const ssize_t r = ::recv(p.reader.get(), buf, sizeof buf, MSG_DONTWAIT);
    char text[300];
    std::snprintf(text, sizeof text,
                  "splice() into a pipe %s with 1000 redirected bytes unread, then recv() %s (TCP: splices them)",
                  outcome(n, err).c_str(), outcome(r, errno).c_str());
    rep.finding(kSplice,
                n > 0                                               ? DefectState::Absent
                : n <= 0 && r == static_cast<ssize_t>(sizeof bytes) ? DefectState::Present
                                                                    : DefectState::NotProbed,
                text);
}

// Each probe on a pair of its own: one that cannot run says why on its own rows and leaves the others to run.
void probe_attached(const Reporter& rep, std::span<const std::byte> object, const std::string& cgroup,
                    const std::string& tmp)
{
    const ssize_t tcp_shutdown_rd = shutdown_rd_on_tcp();
    const Attachment a(object, cgroup, tmp);
    const auto each = [&](auto probe, std::initializer_list<Row> rows) {
        try {
            probe();
        } catch (const Error& e) {
            for (const Row row : rows)
                rep.finding(row, DefectState::NotProbed, e.what());
        }
    };
    each([&] { probe_unread(rep, a); }, {kFionread, kTcpInfo, kCloseUnread});
    each([&] { probe_msg_trunc(rep, a); }, {kMsgTrunc});
    each([&] { probe_shutdown_rd(rep, a, tcp_shutdown_rd); }, {kShutdownRd});
    each([&] { probe_oob(rep, a); }, {kOob});
    each([&] { probe_splice(rep, a); }, {kSplice});
}

void run_probes(const Reporter& rep, std::span<const std::byte> object, SelfTestScope scope)
{
    // Mount points, for the attachment's bpffs and for cgroup2 where none is mounted.
    const std::string tmp = kTmp + name_of(::getpid());
    if (scope == SelfTestScope::All || !host_cgroup2()) {
        private_mounts();
        if (::mkdir(tmp.c_str(), 0700) != 0 && errno != EEXIST)
            fail("mkdir", tmp);
    }
    // Its cgroup first: the network namespace and everything after are charged to it, not to the caller's.
    ProbeCgroup cgroup(rep, tmp);
    if (::unshare(CLONE_NEWNET) != 0)
        fail("unshare", "a network namespace");
    loopback_up();
    try {
        probe_blocking_read(rep);
    } catch (const Error& e) {
        rep.finding(kBlockingRead, DefectState::NotProbed, e.what());
    }
    if (scope == SelfTestScope::All)
        probe_attached(rep, object, cgroup.path(), tmp);
}

[[noreturn]] void child_main(int out, pid_t parent, std::span<const std::byte> object, SelfTestScope scope)
{
    // Dies with its parent: the parent's successor removes what it left (remove_stale).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
        ::_exit(1);
    const Reporter rep(out);
    try {
        run_probes(rep, object, scope);
    } catch (const std::exception& e) {
        rep.stop(e.what());
    }
    ::_exit(0);
}

} // namespace

std::span<const DefectSpec> defect_specs()
{
    return kDefects;
}

SelfTestRun::~SelfTestRun()
{
    if (pid_ > 0)
        ::kill(pid_, SIGKILL);
    clean_up();
}

int SelfTestRun::clean_up()
{
    if (out_ >= 0)
        ::close(std::exchange(out_, -1));
    int status = 0;
    if (pid_ <= 0)
        return status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    remove_leftovers(std::exchange(pid_, -1), cgroup_removed_);
    return status;
}

SelfTestRun::SelfTestRun(std::span<const std::byte> object, SelfTestScope scope) : scope_(scope), started_us_(now_us())
{
    remove_stale();
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        start_error_ = std::string("pipe2: ") + std::strerror(errno);
        return;
    }
    const pid_t parent = ::getpid();
    const pid_t pid = fork_single_threaded();
    if (pid == 0) {
        ::close(fds[0]);
        child_main(fds[1], parent, object, scope);
    }
    ::close(fds[1]);
    if (pid < 0) {
        start_error_ = std::string("fork: ") + std::strerror(errno);
        ::close(fds[0]);
        return;
    }
    pid_ = pid;
    out_ = fds[0];
    // The child is the first to go when memory runs out, not the attach beside it: in a memory cgroup that attach fills
    // (maps that do not fit) the OOM killer would otherwise pick the larger, the attach, which could then not say why
    // it failed. Set from here, before the attach can fill anything: the child's own first step could already meet
    // the limit.
    char path[40];
    std::snprintf(path, sizeof path, "/proc/%d/oom_score_adj", static_cast<int>(pid));
    if (const Fd f(::open(path, O_WRONLY | O_CLOEXEC)); f)
        (void)!::write(f.get(), "1000", 4);
}

SelfTestReport SelfTestRun::finish()
{
    SelfTestReport r = selftests_not_run("");
    bool reported[kCount] = {};
    for (auto& f : r.findings)
        if (scope_ == SelfTestScope::Cheap && f.spec->needs_attach)
            f.detail = "not run by attach (it costs an attach of its own; sockredir-min check runs it)";
    std::string stopped = start_error_;
    const int timeout_ms = scope_ == SelfTestScope::All ? kTimeoutMs : kCheapTimeoutMs;
    // From the start, but never less than a second from now: on a slow machine the attach beside the child may take
    // longer than the child's time, and what the child has sent by then is read all the same.
    const long long deadline = std::max(started_us_ + timeout_ms * 1000LL, now_us() + 1000000);
    while (out_ >= 0) {
        const long long left = (deadline - now_us()) / 1000;
        if (!wait_for(out_, POLLIN, static_cast<int>(std::max(left, 0LL)))) {
            stopped = "the self-tests did not finish in time";
            ::kill(pid_, SIGKILL);
            break;
        }
        Record rec{};
        const ssize_t n = ::read(out_, &rec, sizeof rec);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != sizeof rec)
            break; // the child is gone
        rec.text[sizeof rec.text - 1] = '\0';
        if (rec.kind == 'C') {
            cgroup_removed_ = true;
        } else if (rec.kind == 'X') {
            stopped = rec.text;
        } else if (rec.kind == 'F' && rec.row < kCount && rec.state <= static_cast<uint8_t>(DefectState::NotProbed)) {
            r.findings[rec.row].state = static_cast<DefectState>(rec.state);
            r.findings[rec.row].detail = rec.text;
            reported[rec.row] = true;
        }
    }
    const int status = clean_up();
    if (stopped.empty()) {
        char text[64];
        std::snprintf(text, sizeof text,
                      WIFSIGNALED(status) ? "the self-test child was killed by signal %d"
                                          : "the self-test child ended before it",
                      WTERMSIG(status));
        stopped = text;
    }
    for (size_t i = 0; i < kCount; ++i)
        if (!reported[i] && (scope_ == SelfTestScope::All || !kDefects[i].needs_attach))
            r.findings[i].detail = stopped;
    r.elapsed_ms = static_cast<unsigned>((now_us() - started_us_) / 1000);
    return r;
}

SelfTestReport run_selftests(std::span<const std::byte> object, SelfTestScope scope)
{
    return SelfTestRun(object, scope).finish();
}

SelfTestReport selftests_not_run(const std::string& why)
{
    SelfTestReport r;
    for (size_t i = 0; i < kCount; ++i)
        r.findings[i] = {&kDefects[i], DefectState::NotProbed, why};
    return r;
}

// --- the pure part ---------------------------------------------------------------------------------------------------

uint32_t defect_bits(const SelfTestReport& report)
{
    uint32_t bits = 0;
    for (const auto& f : report.findings) {
        if (f.state == DefectState::NotProbed)
            continue;
        bits |= f.spec->bit << SOCKREDIR_DEFECT_PROBED_SHIFT;
        if (f.state == DefectState::Present)
            bits |= f.spec->bit;
    }
    return bits;
}

std::string format_selftests(const SelfTestReport& report)
{
    static const char* const kStates[] = {"present: ", "absent: ", "not probed: "};
    std::string out = "live self-tests (this kernel, a private namespace and cgroup; not part of the verdict): ";
    out += std::to_string(report.elapsed_ms);
    out += " ms\n";
    for (const auto& f : report.findings) {
        const size_t begin = out.size();
        out += "  ";
        out += f.spec->name;
        out.resize(std::max(out.size() + 1, begin + kNameColumn), ' ');
        out += kStates[static_cast<int>(f.state)];
        out += f.detail;
        if (f.state == DefectState::Present) {
            out += "; affects: ";
            out += f.spec->patterns;
        }
        out += '\n';
    }
    return out;
}

std::string defect_warnings(uint32_t bits, bool redirecting)
{
    std::string out;
    for (const auto& spec : kDefects) {
        // A probe attach runs that could not run here: the operator hears of what may bite, not nothing.
        const bool unknown = !spec.needs_attach && (bits & (spec.bit << SOCKREDIR_DEFECT_PROBED_SHIFT)) == 0;
        if (((bits & spec.bit) == 0 && !unknown) || (!redirecting && spec.needs_redirect))
            continue;
        out += unknown ? "sockredir-min: warning: the self-test could not tell whether this kernel's sockmap path "
                       : "sockredir-min: warning: this kernel's sockmap path ";
        out += spec.behaviour;
        out += "; affects: ";
        out += spec.patterns;
        out += '\n';
    }
    // The probes that cost an attach of their own run in check alone: attach names those it left unprobed, in one
    // line, so that no difference goes unsaid.
    std::string unprobed;
    for (const auto& spec : kDefects)
        if (spec.needs_attach && (bits & (spec.bit << SOCKREDIR_DEFECT_PROBED_SHIFT)) == 0 &&
            (redirecting || !spec.needs_redirect))
            unprobed += (unprobed.empty() ? "" : ", ") + std::string(spec.name);
    if (!unprobed.empty())
        out += "sockredir-min: warning: redirected connections may also differ from TCP here in " + unprobed +
               " (not probed at attach; sockredir-min check proves each on this kernel)\n";
    return out;
}

void print_defect_warnings(const AttachResult& result)
{
    if (result.outcome != AttachOutcome::Attached)
        return;
    if (result.observer.empty())
        std::fprintf(stderr,
                     "sockredir-min: warning: no receive-path observer loads on this kernel (%s): every connection "
                     "stays on TCP\n",
                     result.no_observer_reason.c_str());
    for (const auto& why : result.missing_hooks)
        std::fprintf(stderr, "sockredir-min: warning: %s\n", why.c_str());
    std::fputs(defect_warnings(result.defects, !result.observer.empty()).c_str(), stderr);
}

std::string defect_list(uint32_t set, bool json)
{
    std::string out;
    for (const auto& spec : kDefects) {
        if ((set & spec.bit) == 0)
            continue;
        if (!out.empty())
            out += json ? "," : ", ";
        out += json ? "\"" : "";
        out += spec.name;
        out += json ? "\"" : "";
    }
    return out;
}

std::string format_defects(uint32_t bits)
{
    const uint32_t probed = bits >> SOCKREDIR_DEFECT_PROBED_SHIFT;
    if (probed == 0)
        return "not recorded (no self-test ran at attach)";
    std::string out = defect_list(bits, false);
    if (out.empty())
        out = "none found";
    if (const std::string rest = defect_list(~probed, false); !rest.empty())
        out += " (not probed: " + rest + ")";
    return out;
}

} // namespace sockredir::app
