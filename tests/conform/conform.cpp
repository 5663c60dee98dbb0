// The conformance suite's harness: runs every scenario in a child in the plain cgroup, then in the redirect cgroup,
// compares what the two observed, and judges the differences against the ledger (known-differences.txt).
#include "tests/conform/scenario.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

namespace conform {

// --- the scenario API ------------------------------------------------------------------------------------------------

Fd& Fd::operator=(Fd&& other) noexcept
{
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

Fd::~Fd()
{
    close();
}

void Fd::close()
{
    if (fd_ >= 0)
        ::close(std::exchange(fd_, -1));
}

void Obs::note(std::string_view key, std::string_view value)
{
    items_.emplace_back(key, value);
}

void Obs::note(std::string_view key, long long value)
{
    note(key, std::to_string(value));
}

void Obs::ret(std::string_view key, long long r)
{
    // errno first: to_string may allocate, and nothing may touch errno before it is read.
    const int e = errno;
    note(key, r >= 0 ? std::to_string(r) : errno_name(e));
}

std::string errno_name(int e)
{
    // glibc 2.32+; nullptr for numbers it has no name for.
    if (const char* name = strerrorname_np(e))
        return name;
    return "E" + std::to_string(e);
}

namespace {

[[noreturn]] void fail_errno(const std::string& what)
{
    throw std::runtime_error(what + ": " + errno_name(errno));
}

void set_int(int fd, int level, int name, int value, const char* what)
{
    if (::setsockopt(fd, level, name, &value, sizeof value) != 0)
        fail_errno(what);
}

int family_of(Family f)
{
    return f == Family::v4 ? AF_INET : AF_INET6;
}

// The listening ports of the run in this process: [g_port_next, g_port_end), set by the harness before it forks.
uint16_t g_port_next = 0;
uint16_t g_port_end = 0;

} // namespace

uint16_t next_port()
{
    if (g_port_next == 0 || g_port_next >= g_port_end)
        throw std::runtime_error("next_port: the scenario's ports are used up");
    return g_port_next++;
}

// Ports 20000 and up, below the ephemeral range (32768-60999): kPortsPerRun for each run of each scenario.
constexpr uint16_t kPortBase = 20000;
constexpr uint16_t kPortsPerRun = 8;

void set_run_ports(size_t scenario_index, int run)
{
    const size_t first = kPortBase + (scenario_index * 2 + static_cast<size_t>(run)) * kPortsPerRun;
    if (first + kPortsPerRun > 32768)
        throw std::runtime_error("set_run_ports: too many scenarios for the port range");
    g_port_next = static_cast<uint16_t>(first);
    g_port_end = static_cast<uint16_t>(first + kPortsPerRun);
}

Pair make_pair(const PairOptions& options)
{
    Pair pair;
    const int lfamily = family_of(options.family);
    pair.listener = Fd(::socket(lfamily, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!pair.listener)
        fail_errno("socket (listener)");
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    if (lfamily == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&addr);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a->sin_port = htons(next_port());
        addr_len = sizeof *a;
    } else {
        // v6: ::1 only; dual: the wildcard with V6ONLY off, so that a v4 client reaches it as ::ffff:127.0.0.1.
        set_int(pair.listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, options.family == Family::v6 ? 1 : 0, "IPV6_V6ONLY");
        auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
        a->sin6_family = AF_INET6;
        a->sin6_addr = options.family == Family::v6 ? in6addr_loopback : in6addr_any;
        a->sin6_port = htons(next_port());
        addr_len = sizeof *a;
    }
    if (::bind(pair.listener.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0)
        fail_errno("bind");
    if (options.on_listener)
        options.on_listener(pair.listener.get());
    if (::listen(pair.listener.get(), 16) != 0)
        fail_errno("listen");
    if (::getsockname(pair.listener.get(), reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0)
        fail_errno("getsockname");

    sockaddr_storage peer{};
    socklen_t peer_len = 0;
    int cfamily = lfamily;
    if (options.family == Family::dual) {
        cfamily = AF_INET;
        auto* p = reinterpret_cast<sockaddr_in*>(&peer);
        p->sin_family = AF_INET;
        p->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        p->sin_port = reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port;
        peer_len = sizeof *p;
    } else {
        peer = addr;
        peer_len = addr_len;
    }
    pair.client = Fd(::socket(cfamily, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!pair.client)
        fail_errno("socket (client)");
    if (options.on_client)
        options.on_client(pair.client.get());
    // Connected in the mode the story reads in, as its application would: sockredir keeps a client socket that is
    // blocking when its connection is established off the map, and watches the reads of the server's end.
    set_nonblock(pair.client.get(), options.client_nonblock);
    if (::connect(pair.client.get(), reinterpret_cast<sockaddr*>(&peer), peer_len) != 0) {
        if (errno != EINPROGRESS)
            fail_errno("connect");
        if (!wait_writable(pair.client.get(), 5000))
            throw std::runtime_error("connect: not connected within 5 s");
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(pair.client.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            errno = err;
            fail_errno("connect");
        }
    }
    set_nonblock(pair.client.get(), options.client_nonblock);
    if (options.accept) {
        pair.accept_now(options);
        if (options.warm_up) {
            warm_up_read_write(pair.client.get(), pair.server.get());
        }
    }
    return pair;
}

namespace {

// One byte from `from` to `to`, read in `to`'s own mode.
void one_byte(int from, int to)
{
    const char w = 'w';
    while (::send(from, &w, 1, MSG_NOSIGNAL) != 1)
        if (errno != EINTR && errno != EAGAIN)
            fail_errno("warm-up send");
    char r = 0;
    for (;;) {
        const int flags = ::fcntl(to, F_GETFL);
        if ((flags & O_NONBLOCK) != 0 && !wait_readable(to, 5000))
            throw std::runtime_error("warm-up: no byte within 5 s");
        const ssize_t n = ::recv(to, &r, 1, 0);
        if (n == 1)
            return;
        if (n == 0)
            throw std::runtime_error("warm-up: EOF");
        if (errno != EINTR && errno != EAGAIN)
            fail_errno("warm-up recv");
    }
}

} // namespace

void warm_up_read_write(int client, int server)
{
    one_byte(client, server);
    one_byte(server, client);
}

void Pair::accept_now(const PairOptions& options)
{
    const int flags = SOCK_CLOEXEC | (options.server_nonblock ? SOCK_NONBLOCK : 0);
    int fd;
    while ((fd = ::accept4(listener.get(), nullptr, nullptr, flags)) < 0)
        if (errno != EINTR)
            fail_errno("accept4");
    server = Fd(fd);
}

namespace {

// splitmix64: every 8-byte word of a stream differs, so a lost, repeated or reordered piece shows.
uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t pattern_word(uint32_t seed, uint64_t word)
{
    return mix((uint64_t{seed} << 44) ^ word);
}

} // namespace

void pattern(uint32_t seed, uint64_t offset, unsigned char* buf, size_t len)
{
    uint64_t word = offset / 8;
    uint64_t w = pattern_word(seed, word);
    for (size_t i = 0; i < len; ++i) {
        const uint64_t o = offset + i;
        if (o / 8 != word) {
            word = o / 8;
            w = pattern_word(seed, word);
        }
        buf[i] = static_cast<unsigned char>(w >> ((o % 8) * 8));
    }
}

bool check_pattern(uint32_t seed, uint64_t offset, const unsigned char* buf, size_t len)
{
    unsigned char expect[4096];
    for (size_t done = 0; done < len;) {
        const size_t n = std::min(len - done, sizeof expect);
        pattern(seed, offset + done, expect, n);
        if (std::memcmp(expect, buf + done, n) != 0)
            return false;
        done += n;
    }
    return true;
}

long long send_pattern(int fd, uint32_t seed, uint64_t offset, size_t len)
{
    std::vector<unsigned char> buf(std::min<size_t>(len, 64 * 1024));
    size_t sent = 0;
    while (sent < len) {
        const size_t n = std::min(len - sent, buf.size());
        pattern(seed, offset + sent, buf.data(), n);
        size_t part = 0;
        while (part < n) {
            const ssize_t w = ::send(fd, buf.data() + part, n - part, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            part += static_cast<size_t>(w);
        }
        sent += n;
    }
    return static_cast<long long>(sent);
}

long long recv_pattern(int fd, uint32_t seed, uint64_t offset, size_t len, bool* intact, int timeout_ms)
{
    const bool nonblock = (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::vector<unsigned char> buf(std::min<size_t>(len, 64 * 1024) + 1);
    bool good = true;
    size_t got = 0;
    int error = 0;
    while (got < len) {
        const ssize_t r = ::recv(fd, buf.data(), std::min(len - got, buf.size()), 0);
        if (r > 0) {
            good = good && check_pattern(seed, offset + got, buf.data(), static_cast<size_t>(r));
            got += static_cast<size_t>(r);
            continue;
        }
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        if (nonblock && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() > 0 && wait_readable(fd, static_cast<int>(left.count())))
                continue;
        }
        error = errno;
        break;
    }
    if (intact)
        *intact = good;
    if (got == 0 && error != 0) {
        errno = error;
        return -1;
    }
    return static_cast<long long>(got);
}

namespace {

bool wait_for(int fd, short events, int timeout_ms)
{
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        pollfd p{fd, events, 0};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        const int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
        if (r > 0)
            return (p.revents & events) != 0;
        if (r == 0 || errno != EINTR)
            return false;
    }
}

} // namespace

bool wait_readable(int fd, int timeout_ms)
{
    return wait_for(fd, POLLIN, timeout_ms);
}

bool wait_writable(int fd, int timeout_ms)
{
    return wait_for(fd, POLLOUT, timeout_ms);
}

void set_nonblock(int fd, bool on)
{
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) != 0)
        fail_errno("fcntl O_NONBLOCK");
}

void sleep_ms(int ms)
{
    timespec t{ms / 1000, (ms % 1000) * 1000000L};
    while (::nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

namespace {

std::vector<Scenario>& registry()
{
    static std::vector<Scenario> all;
    return all;
}

} // namespace

const std::vector<Scenario>& scenarios()
{
    return registry();
}

Registrar::Registrar(const Scenario& scenario)
{
    registry().push_back(scenario);
}

} // namespace conform

// --- the harness -----------------------------------------------------------------------------------------------------

namespace {

using conform::Fd;
using Items = std::vector<std::pair<std::string, std::string>>;

struct Options {
    std::string plain_cgroup;
    std::string redirect_cgroup;
    std::string sockredir;
    std::string pin_dir;
    std::set<std::string> only;
    bool list = false;
    std::string json;
    std::string ledger;
    std::string kernel; // series ("6.18"); empty: from uname
};

constexpr const char* kUsage =
    "usage: sockredir-conform --plain-cgroup DIR --redirect-cgroup DIR --sockredir BIN --pin-dir DIR\n"
    "                         [--only NAME,NAME] [--list] [--json FILE] [--ledger FILE] [--kernel SERIES]\n";

[[noreturn]] void die(const std::string& why)
{
    std::fflush(stdout); // the table so far first, then why it stops
    std::fprintf(stderr, "sockredir-conform: %s\n", why.c_str());
    std::exit(1);
}

[[noreturn]] void usage(const std::string& why)
{
    std::fprintf(stderr, "sockredir-conform: %s\n%s", why.c_str(), kUsage);
    std::exit(2);
}

Options parse_options(int argc, char** argv)
{
    Options o;
    const std::map<std::string, std::string*> values = {
        {"--plain-cgroup", &o.plain_cgroup},
        {"--redirect-cgroup", &o.redirect_cgroup},
        {"--sockredir", &o.sockredir},
        {"--pin-dir", &o.pin_dir},
        {"--json", &o.json},
        {"--ledger", &o.ledger},
        {"--kernel", &o.kernel},
    };
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--list") {
            o.list = true;
        } else if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (arg == "--only" || values.count(arg)) {
            if (i + 1 >= argc)
                usage(arg + " needs a value");
            const std::string value = argv[++i];
            if (arg == "--only") {
                std::stringstream names(value);
                for (std::string name; std::getline(names, name, ',');)
                    if (!name.empty())
                        o.only.insert(name);
            } else {
                *values.at(arg) = value;
            }
        } else {
            usage("unknown argument '" + arg + "'");
        }
    }
    if (!o.list && (o.plain_cgroup.empty() || o.redirect_cgroup.empty() || o.sockredir.empty() || o.pin_dir.empty()))
        usage("--plain-cgroup, --redirect-cgroup, --sockredir and --pin-dir are required");
    return o;
}

// --- one run of a scenario, in a child -------------------------------------------------------------------------------

enum class End { ok, exception, crashed, timeout, harness };

struct Run {
    Items items;
    End end = End::ok;
};

// The child's report over the pipe: records of a tag byte and length-prefixed strings, so that any byte can travel.
constexpr char kItem = 'i';
constexpr char kThrown = 'x';
constexpr char kHarness = 'h';
constexpr char kDone = 'd';

void put_string(std::string& out, std::string_view s)
{
    const uint32_t n = static_cast<uint32_t>(s.size());
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
    out.append(s);
}

void write_all(int fd, const std::string& data)
{
    for (size_t done = 0; done < data.size();) {
        const ssize_t w = ::write(fd, data.data() + done, data.size() - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        done += static_cast<size_t>(w);
    }
}

// In the child: join the cgroup, then tell the story; sockets made before the join would not be in the cgroup's view.
[[noreturn]] void child_main(const conform::Scenario& scenario, const std::string& cgroup, int out)
{
    // An application starts with default signal handling; the harness's own (or meson's) must not leak into the story.
    for (int sig = 1; sig < NSIG; ++sig)
        ::signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    std::string report;
    const std::string procs = cgroup + "/cgroup.procs";
    const std::string pid = std::to_string(::getpid()) + "\n";
    const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size())) {
        report += kHarness;
        put_string(report, "cannot join " + procs + ": " + conform::errno_name(errno));
        report += kDone;
        write_all(out, report);
        std::_Exit(3);
    }
    ::close(fd);

    conform::Obs obs;
    std::string thrown;
    bool threw = false;
    try {
        scenario.run(obs);
    } catch (const std::exception& e) {
        threw = true;
        thrown = e.what();
    } catch (...) {
        threw = true;
        thrown = "unknown exception";
    }
    for (const auto& [key, value] : obs.items()) {
        report += kItem;
        put_string(report, key);
        put_string(report, value);
    }
    if (threw) {
        report += kThrown;
        put_string(report, thrown);
    }
    report += kDone;
    write_all(out, report);
    // No destructors, no atexit: threads the story left behind must not keep the child alive.
    std::_Exit(0);
}

// Parses what the child sent; false when the report is cut short.
bool parse_report(const std::string& data, Run& run)
{
    size_t pos = 0;
    auto get_string = [&](std::string& s) {
        uint32_t n;
        if (data.size() - pos < sizeof n)
            return false;
        std::memcpy(&n, data.data() + pos, sizeof n);
        pos += sizeof n;
        if (data.size() - pos < n)
            return false;
        s.assign(data, pos, n);
        pos += n;
        return true;
    };
    while (pos < data.size()) {
        const char tag = data[pos++];
        std::string a, b;
        switch (tag) {
        case kItem:
            if (!get_string(a) || !get_string(b))
                return false;
            run.items.emplace_back(a, b);
            break;
        case kThrown:
            if (!get_string(a))
                return false;
            run.items.emplace_back("exception", a);
            run.end = End::exception;
            break;
        case kHarness:
            if (!get_string(a))
                return false;
            run.items.emplace_back("harness", a);
            run.end = End::harness;
            break;
        case kDone:
            return true;
        default:
            return false;
        }
    }
    return false;
}

std::string signal_name(int sig)
{
    if (const char* abbrev = sigabbrev_np(sig))
        return std::string("SIG") + abbrev;
    return "signal " + std::to_string(sig);
}

// run: 0 plain, 1 redirected; each has listening ports of its own (conform::next_port).
Run run_in_child(const conform::Scenario& scenario, size_t index, int run_number, const std::string& cgroup)
{
    conform::set_run_ports(index, run_number);
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0)
        die(std::string("pipe2: ") + conform::errno_name(errno));
    Fd rd(p[0]), wr(p[1]);
    std::fflush(nullptr); // the child exits without flushing; nothing buffered here may be printed twice
    const pid_t pid = ::fork();
    if (pid < 0)
        die(std::string("fork: ") + conform::errno_name(errno));
    if (pid == 0) {
        rd.close();
        child_main(scenario, cgroup, wr.get());
    }
    wr.close();

    // Read until the report is complete or the time is up. A process the story forked may hold the pipe open after
    // the child is gone, so the end of the report, not EOF, says the child is done.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(conform::kScenarioSeconds);
    std::string data;
    bool done = false, timed_out = false;
    Run run;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd pfd{rd.get(), POLLIN, 0};
        const int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die(std::string("poll: ") + conform::errno_name(errno));
        if (r == 0)
            continue;
        char buf[65536];
        const ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; // EOF: the child is gone; parse what came
        data.append(buf, static_cast<size_t>(n));
        Run attempt;
        if (parse_report(data, attempt)) {
            run = std::move(attempt);
            done = true;
            break;
        }
    }
    if (!done && !timed_out) {
        Run partial;
        parse_report(data, partial);
        run = std::move(partial);
    }

    // Reap: the child exits right after its report; past the deadline it is killed (by its pid: it is ours).
    int status = 0;
    for (;;) {
        const pid_t w = ::waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die(std::string("waitpid: ") + conform::errno_name(errno));
        }
        if (timed_out || std::chrono::steady_clock::now() >= deadline) {
            timed_out = true;
            ::kill(pid, SIGKILL);
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        conform::sleep_ms(2);
    }

    if (timed_out && !done) {
        run.items.emplace_back("timeout", "killed after " + std::to_string(conform::kScenarioSeconds) + " s");
        run.end = End::timeout;
    } else if (WIFSIGNALED(status)) {
        run.items.emplace_back("killed by", signal_name(WTERMSIG(status)));
        run.end = End::crashed;
    } else if (!done) {
        run.items.emplace_back("exit", std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1));
        if (run.end == End::ok)
            run.end = End::crashed;
    }
    return run;
}

// --- sockredir's counters --------------------------------------------------------------------------------------------

// messages_redirected from `BIN status --pin-dir DIR --json`; 0 when nothing is attached there.
uint64_t messages_redirected(const Options& o)
{
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0)
        die(std::string("pipe2: ") + conform::errno_name(errno));
    Fd rd(p[0]), wr(p[1]);
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0)
        die(std::string("fork: ") + conform::errno_name(errno));
    if (pid == 0) {
        ::dup2(wr.get(), STDOUT_FILENO);
        const char* argv[] = {o.sockredir.c_str(), "status", "--pin-dir", o.pin_dir.c_str(), "--json", nullptr};
        ::execv(argv[0], const_cast<char* const*>(argv));
        std::_Exit(127);
    }
    wr.close();
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        out.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die(o.sockredir + " status --pin-dir " + o.pin_dir + " --json failed");
    // Nothing attached at the pin dir: nothing can be redirected (a run with both cgroups plain shows the suite's
    // own determinism).
    if (out.find("\"attached\":false") != std::string::npos)
        return 0;
    const std::string key = "\"messages_redirected\":";
    const size_t at = out.find(key);
    if (at == std::string::npos)
        die(o.sockredir + " status --json has no messages_redirected (is it attached with --pin-dir " + o.pin_dir +
            "?)");
    return std::strtoull(out.c_str() + at + key.size(), nullptr, 10);
}

// --- the ledger ------------------------------------------------------------------------------------------------------

struct LedgerEntry {
    std::set<std::string> series;
    std::string reason;
    int line = 0;
};

// Lines "NAME SERIES... # reason"; blank lines and lines starting with '#' are comments.
std::map<std::string, LedgerEntry> read_ledger(const std::string& path)
{
    std::map<std::string, LedgerEntry> ledger;
    if (path.empty())
        return ledger;
    std::ifstream f(path);
    if (!f)
        die("cannot read the ledger " + path);
    std::string line;
    for (int number = 1; std::getline(f, line); ++number) {
        std::string reason;
        if (const size_t hash = line.find('#'); hash != std::string::npos) {
            reason = line.substr(hash + 1);
            line.resize(hash);
        }
        std::istringstream words(line);
        std::string name;
        if (!(words >> name))
            continue;
        LedgerEntry entry;
        entry.line = number;
        const size_t start = reason.find_first_not_of(' ');
        entry.reason = start == std::string::npos ? "" : reason.substr(start);
        for (std::string s; words >> s;) {
            if (s != "*" && s != "6.1" && s != "6.12" && s != "6.18")
                die(path + ":" + std::to_string(number) + ": unknown kernel series '" + s + "' (6.1, 6.12, 6.18 or *)");
            entry.series.insert(s);
        }
        if (entry.series.empty())
            die(path + ":" + std::to_string(number) + ": " + name + " names no kernel series");
        if (entry.reason.empty())
            die(path + ":" + std::to_string(number) + ": " + name + " has no reason (# why)");
        if (!ledger.emplace(name, entry).second)
            die(path + ":" + std::to_string(number) + ": " + name + " is listed twice");
    }
    return ledger;
}

// "6.18" of "6.18.44-fc-v973", "6.1" of "6.1.0-31-amd64".
std::string series_of(const std::string& release)
{
    const size_t dot = release.find('.');
    if (dot == std::string::npos)
        return release;
    const size_t end = release.find_first_not_of("0123456789", dot + 1);
    return release.substr(0, end);
}

// --- verdicts and output ---------------------------------------------------------------------------------------------

struct Result {
    const conform::Scenario* scenario;
    Run plain;
    Run redirected;
    std::string path; // "redirected" or "tcp"
    std::string verdict;
    std::string ledger; // "", "known", "new", "fixed"
    double seconds = 0;
};

std::string json_string(std::string_view s)
{
    std::string out = "\"";
    for (const char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

std::string json_items(const Items& items)
{
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i)
        out +=
            (i ? "," : "") + std::string("[") + json_string(items[i].first) + "," + json_string(items[i].second) + "]";
    return out + "]";
}

void write_json(const std::string& path, const std::vector<Result>& results, const std::string& release,
                const std::string& series, const std::map<std::string, LedgerEntry>& ledger)
{
    std::string out = "{\"kernel\":" + json_string(release) + ",\"series\":" + json_string(series) + ",\"scenarios\":[";
    for (size_t i = 0; i < results.size(); ++i) {
        const Result& r = results[i];
        const auto known = ledger.find(r.scenario->name);
        out += i ? ",\n" : "\n";
        out += "{\"name\":" + json_string(r.scenario->name) + ",\"group\":" + json_string(r.scenario->group) +
               ",\"title\":" + json_string(r.scenario->title) + ",\"kernel\":" + json_string(release) +
               ",\"verdict\":" + json_string(r.verdict) + ",\"path\":" + json_string(r.path) +
               ",\"ledger\":" + json_string(r.ledger) +
               ",\"reason\":" + json_string(known == ledger.end() ? "" : known->second.reason) +
               ",\"plain\":" + json_items(r.plain.items) + ",\"redirected\":" + json_items(r.redirected.items) + "}";
    }
    out += "\n]}\n";
    std::ofstream f(path);
    f << out;
    if (!f)
        die("cannot write " + path);
}

std::string item_text(const Items& items, size_t i)
{
    return i < items.size() ? items[i].first + ": " + items[i].second : "(nothing)";
}

void print_difference(const Result& r)
{
    const Items& a = r.plain.items;
    const Items& b = r.redirected.items;
    size_t first = 0;
    while (first < a.size() && first < b.size() && a[first] == b[first])
        ++first;
    std::printf("      %-44s %s\n", "plain TCP", "redirected");
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
        std::printf("    %s %-44s %s\n", i == first ? ">" : " ", item_text(a, i).c_str(), item_text(b, i).c_str());
}

} // namespace

int main(int argc, char** argv)
{
    const Options o = parse_options(argc, argv);
    std::vector<const conform::Scenario*> chosen;
    std::set<std::string> names;
    for (const auto& s : conform::scenarios()) {
        if (!names.insert(s.name).second)
            die(std::string("two scenarios are named ") + s.name);
        if (o.only.empty() || o.only.count(s.name))
            chosen.push_back(&s);
    }
    for (const auto& name : o.only)
        if (!names.count(name))
            usage("no scenario is named '" + name + "' (--list)");
    if (o.list) {
        for (const auto* s : chosen)
            std::printf("%-28s %-22s %s\n", s->name, s->group, s->title);
        return 0;
    }

    utsname u{};
    ::uname(&u);
    const std::string release = u.release;
    const std::string series = o.kernel.empty() ? series_of(release) : o.kernel;
    const auto ledger = read_ledger(o.ledger);
    for (const auto& [name, entry] : ledger)
        if (!names.count(name))
            die(o.ledger + ":" + std::to_string(entry.line) + ": no scenario is named " + name);

    // The harness makes no socket and takes no signal of its own; a story's SIGPIPE or SIGCHLD is its child's.
    std::printf("conformance: Linux %s (series %s), %zu scenarios, plain cgroup %s, redirect cgroup %s\n",
                release.c_str(), series.c_str(), chosen.size(), o.plain_cgroup.c_str(), o.redirect_cgroup.c_str());
    const auto suite_start = std::chrono::steady_clock::now();
    std::vector<Result> results;
    std::vector<std::string> failures;
    std::map<std::string, int> counts;
    for (const auto* s : chosen) {
        const auto start = std::chrono::steady_clock::now();
        Result r{s, {}, {}, {}, {}, {}, 0};
        const size_t index = static_cast<size_t>(s - conform::scenarios().data());
        r.plain = run_in_child(*s, index, 0, o.plain_cgroup);
        const uint64_t before = messages_redirected(o);
        r.redirected = run_in_child(*s, index, 1, o.redirect_cgroup);
        const uint64_t after = messages_redirected(o);
        // A child that could not join its cgroup told no story: nothing to compare, for any scenario.
        for (const Run* run : {&r.plain, &r.redirected})
            if (run->end == End::harness)
                die(run->items.back().second);
        r.path = after > before ? "redirected" : "tcp";
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

        if (r.plain.end != End::ok)
            r.verdict = "broken";
        else if (r.plain.items == r.redirected.items)
            r.verdict = r.path == "redirected" ? "same" : "same-tcp";
        else
            r.verdict = "differs";
        const auto known = ledger.find(s->name);
        const bool listed =
            known != ledger.end() && (known->second.series.count("*") || known->second.series.count(series));
        if (r.verdict == "broken") {
            failures.push_back(std::string(s->name) + ": broken: the plain TCP run failed (" +
                               item_text(r.plain.items, r.plain.items.size() - 1) + ")");
        } else if (r.verdict == "differs") {
            r.ledger = listed ? "known" : "new";
            if (!listed)
                failures.push_back(std::string(s->name) + ": differs and is not in the ledger for " + series);
        } else if (listed) {
            r.ledger = "fixed";
            failures.push_back(std::string(s->name) + ": fixed: remove " + s->name + " from the ledger for " + series);
        }
        ++counts[r.verdict];
        std::printf("  %-28s %-8s %-10s %5.2f s%s%s\n", s->name, r.verdict.c_str(), r.path.c_str(), r.seconds,
                    r.ledger.empty() ? "" : "  ", r.ledger.c_str());
        if (r.verdict == "differs" || r.verdict == "broken")
            print_difference(r);
        std::fflush(stdout);
        results.push_back(std::move(r));
    }
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - suite_start).count();

    if (!o.json.empty())
        write_json(o.json, results, release, series, ledger);
    std::printf("conformance: %d same, %d same-tcp, %d differs, %d broken in %.1f s\n", counts["same"],
                counts["same-tcp"], counts["differs"], counts["broken"], total);
    for (const auto& f : failures)
        std::printf("FAIL: %s\n", f.c_str());
    if (failures.empty())
        std::printf("ok: every difference is in the ledger for %s, and every listed one still differs\n",
                    series.c_str());
    return failures.empty() ? 0 : 1;
}
