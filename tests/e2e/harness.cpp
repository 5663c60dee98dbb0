// Isolation and traffic harness of the privileged end-to-end tests: own cgroup, own bpffs, private netns children.
#include "harness.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "bpf/sockredir_shared.h"
#include "loader/app/contract.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/mounts.hpp"
#include "loader/ebpf/sys.hpp"

extern char** environ;

namespace e2e {

namespace {

using sockredir::base::Fd;

std::string env_or_empty(const char* name)
{
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
}

std::string cgroup2_mount()
{
    const auto found = sockredir::ebpf::find_cgroup2_mount(sockredir::base::read_file_text("/proc/self/mountinfo"));
    if (!found)
        throw std::runtime_error("no cgroup2 mount in /proc/self/mountinfo");
    return *found;
}

void write_file(const std::string& path, const std::string& text)
{
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd)
        throw_errno("opening " + path);
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        throw_errno("writing " + path);
}

// One socket address for either family from a numeric address and a port.
struct SockAddr {
    sockaddr_storage storage{};
    socklen_t len = 0;
};

SockAddr make_addr(int family, const std::string& addr, uint16_t port)
{
    SockAddr a;
    if (family == AF_INET) {
        auto* in = reinterpret_cast<sockaddr_in*>(&a.storage);
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        if (::inet_pton(AF_INET, addr.c_str(), &in->sin_addr) != 1)
            throw std::runtime_error("bad IPv4 address " + addr);
        a.len = sizeof *in;
    } else {
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        if (::inet_pton(AF_INET6, addr.c_str(), &in6->sin6_addr) != 1)
            throw std::runtime_error("bad IPv6 address " + addr);
        a.len = sizeof *in6;
    }
    return a;
}

uint16_t port_of(int fd)
{
    sockaddr_storage s{};
    socklen_t len = sizeof s;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len) != 0)
        throw_errno("getsockname");
    if (s.ss_family == AF_INET)
        return ntohs(reinterpret_cast<sockaddr_in*>(&s)->sin_port);
    return ntohs(reinterpret_cast<sockaddr_in6*>(&s)->sin6_port);
}

uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Program names as the kernel keeps them: at most BPF_OBJ_NAME_LEN - 1 characters.
std::string kernel_name(const std::string& name)
{
    return name.substr(0, BPF_OBJ_NAME_LEN - 1);
}

bool is_our_prog_name(const std::string& name)
{
    return name == kernel_name(SOCKREDIR_PROG_SOCKOPS) || name == kernel_name(SOCKREDIR_PROG_MSG) ||
           name == kernel_name(SOCKREDIR_PROG_EVICT) || name == kernel_name(SOCKREDIR_PROG_UNMAP) ||
           name == kernel_name(SOCKREDIR_PROG_OBSERVE_TP) || name == kernel_name(SOCKREDIR_PROG_OBSERVE_FEXIT) ||
           name == kernel_name(SOCKREDIR_PROG_OBSERVE_MAP) ||
           name == kernel_name(SOCKREDIR_PROG_SETSOCKOPT) || name == kernel_name(SOCKREDIR_PROG_GETSOCKOPT);
}

bool is_our_map_name(const std::string& name)
{
    return name == SOCKREDIR_MAP_SOCKS || name == SOCKREDIR_MAP_COUNTERS || name == SOCKREDIR_MAP_CONFIG ||
           name == SOCKREDIR_MAP_SOCK_STATE || name == SOCKREDIR_MAP_FLOWS || name == SOCKREDIR_MAP_LEARNED ||
           name == SOCKREDIR_MAP_UNMAP_BATCH;
}

} // namespace

void sleep_ms(int ms)
{
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

bool exists(const std::string& path)
{
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

std::string report_field(const std::string& text, const std::string& name)
{
    const auto at = text.find(" " + name + "=");
    if (at == std::string::npos)
        return {};
    const auto from = at + name.size() + 2;
    return text.substr(from, text.find_first_of(" \n", from) - from);
}

std::optional<std::string> skip_reason()
{
    if (::geteuid() != 0)
        return "not root (the kernel tests load BPF programs and make cgroups)";
    try {
        sockredir::ebpf::sys::all_prog_ids();
    } catch (const std::exception& e) {
        return std::string("the kernel refuses bpf(2): ") + e.what();
    }
    try {
        cgroup2_mount();
    } catch (const std::exception& e) {
        return e.what();
    }
    return std::nullopt;
}

std::string bin_path()
{
    const auto v = env_or_empty("SOCKREDIR_BIN");
    if (v.empty())
        throw std::runtime_error("SOCKREDIR_BIN is not set (meson test sets it)");
    return v;
}

std::string object_path()
{
    const auto v = env_or_empty("SOCKREDIR_BPF_OBJECT");
    if (v.empty())
        throw std::runtime_error("SOCKREDIR_BPF_OBJECT is not set (meson test sets it)");
    return v;
}

RunResult run_bin(const std::vector<std::string>& args, const RunOptions& options)
{
    const std::string bin = bin_path();
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
        throw_errno("pipe2");
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e)
        env_strings.emplace_back(*e);
    for (const auto& e : options.env)
        env_strings.push_back(e);
    std::vector<char*> envp, argv;
    for (auto& e : env_strings)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> arg_strings{bin};
    arg_strings.insert(arg_strings.end(), args.begin(), args.end());
    for (auto& a : arg_strings)
        argv.push_back(a.data());
    argv.push_back(nullptr);

    const pid_t pid = ::fork();
    if (pid < 0)
        throw_errno("fork");
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
        if (!options.join_procs.empty()) {
            const int fd = ::open(options.join_procs.c_str(), O_WRONLY | O_CLOEXEC);
            if (fd < 0 || ::write(fd, "0", 1) != 1) // "0": the writing process itself
                ::_exit(125);
            ::close(fd);
        }
        if (options.uid) {
            const gid_t gid = static_cast<gid_t>(*options.uid);
            if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(*options.uid) != 0)
                ::_exit(126);
        }
        ::execve(bin.c_str(), argv.data(), envp.data());
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    RunResult r;
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    std::string* sinks[2] = {&r.out, &r.err};
    int open_streams = 2;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (open_streams > 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            break;
        }
        if (::poll(fds, 2, 1000) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
                continue;
            char buf[4096];
            const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open_streams;
            }
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0)
            ::close(f.fd);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status))
        r.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        r.signal = WTERMSIG(status);
    return r;
}

int line_count(const std::string& text)
{
    int n = 0;
    for (char c : text)
        n += c == '\n';
    if (!text.empty() && text.back() != '\n')
        ++n;
    return n;
}

// --- cgroup, bpffs, sandbox ---------------------------------------------------------------------------------------

TestCgroup::TestCgroup()
{
    static std::atomic<int> counter{0};
    path_ = cgroup2_mount() + "/sockredir-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    if (::mkdir(path_.c_str(), 0755) != 0)
        throw_errno("creating cgroup " + path_);
}

TestCgroup::~TestCgroup()
{
    // A child that just exited can keep the cgroup busy for a moment.
    for (int i = 0; i < 200; ++i) {
        if (::rmdir(path_.c_str()) == 0 || errno == ENOENT)
            return;
        if (errno != EBUSY)
            break;
        sleep_ms(10);
    }
    std::fprintf(stderr, "e2e: could not remove cgroup %s: %s\n", path_.c_str(), std::strerror(errno));
}

Bpffs::Bpffs()
{
    char tmpl[] = "/tmp/sockredir-e2e-bpffs-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr)
        throw_errno("mkdtemp");
    root_ = tmpl;
    // A private instance: nothing pinned by anyone else is visible here, nothing of ours outlives the test.
    if (::mount("bpf", root_.c_str(), "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") != 0) {
        const int e = errno;
        ::rmdir(root_.c_str());
        errno = e;
        throw_errno("mounting bpffs on " + root_);
    }
}

Bpffs::~Bpffs()
{
    if (::umount2(root_.c_str(), MNT_DETACH) != 0)
        std::fprintf(stderr, "e2e: umount %s: %s\n", root_.c_str(), std::strerror(errno));
    ::rmdir(root_.c_str());
}

Sandbox::~Sandbox()
{
    try {
        detach();
    } catch (...) {
        // Unmounting the bpffs below drops the pins anyway.
    }
}

std::vector<std::string> Sandbox::attach_args() const
{
    return {"attach", "--cgroup", cgroup.path(), "--pin-dir", pin_dir()};
}

RunResult Sandbox::attach(const RunOptions& options) const
{
    return run_bin(attach_args(), options);
}

RunResult Sandbox::detach(const RunOptions& options) const
{
    return run_bin({"detach", "--pin-dir", pin_dir()}, options);
}

// --- children -------------------------------------------------------------------------------------------------------

Channel::Channel(Channel&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

Channel& Channel::operator=(Channel&& other) noexcept
{
    if (this != &other) {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

Channel::~Channel()
{
    if (fd_ >= 0)
        ::close(fd_);
}

void Channel::send(const std::string& message) const
{
    if (::send(fd_, message.data(), message.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(message.size()))
        throw_errno("channel send");
}

std::string Channel::receive(int timeout_ms) const
{
    pollfd p{fd_, POLLIN, 0};
    int r;
    do {
        r = ::poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        throw std::runtime_error("channel: no message within " + std::to_string(timeout_ms) + " ms");
    std::string buf(65536, '\0');
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0)
        throw_errno("channel receive");
    if (n == 0)
        throw std::runtime_error("channel: the other side exited");
    buf.resize(static_cast<size_t>(n));
    return buf;
}

Child::Child(Child&& other) noexcept : pid_(std::exchange(other.pid_, -1)), channel_(std::move(other.channel_)) {}

Child::~Child()
{
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
}

int Child::wait(int timeout_ms)
{
    if (pid_ <= 0)
        throw std::runtime_error("waiting for a child that is gone");
    int status = 0;
    for (int waited = 0;; waited += 10) {
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_)
            break;
        if (r < 0 && errno != EINTR)
            throw_errno("waitpid");
        if (waited >= timeout_ms) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
            pid_ = -1;
            throw std::runtime_error("child did not exit within " + std::to_string(timeout_ms) + " ms");
        }
        sleep_ms(10);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

Child spawn(const std::function<int(const Channel&)>& body)
{
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        throw_errno("socketpair");
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0)
        throw_errno("fork");
    if (pid == 0) {
        ::close(sv[0]);
        // Die with the test process: a stuck child must never outlive it.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        Channel ch(sv[1]);
        int code = 1;
        try {
            code = body(ch);
        } catch (const std::exception& e) {
            try {
                ch.send(std::string("error ") + e.what());
            } catch (...) {
            }
        }
        ::_exit(code);
    }
    ::close(sv[1]);
    return Child(pid, Channel(sv[0]));
}

void enter_cgroup(const std::string& cgroup)
{
    write_file(cgroup + "/cgroup.procs", std::to_string(::getpid()));
}

void enter_private_netns()
{
    if (::unshare(CLONE_NEWNET) != 0)
        throw_errno("unshare(CLONE_NEWNET)");
    // A new namespace has lo down; bringing it up gives it 127.0.0.1 and ::1.
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s)
        throw_errno("socket");
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0)
        throw_errno("SIOCGIFFLAGS lo");
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0)
        throw_errno("SIOCSIFFLAGS lo");
}

void run_checked(const std::vector<std::string>& argv)
{
    std::vector<std::string> copy = argv;
    std::vector<char*> args;
    for (auto& a : copy)
        args.push_back(a.data());
    args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0)
        throw_errno("fork");
    if (pid == 0) {
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::string cmd;
        for (const auto& a : argv)
            cmd += (cmd.empty() ? "" : " ") + a;
        throw std::runtime_error("'" + cmd + "' failed (status " + std::to_string(status) + ")");
    }
}

TcpSegments read_tcp_segments()
{
    const std::string text = sockredir::base::read_file_text("/proc/net/snmp");
    std::istringstream lines(text);
    std::string header, values, line;
    while (std::getline(lines, line)) {
        if (line.rfind("Tcp:", 0) != 0)
            continue;
        if (header.empty())
            header = line;
        else
            values = line;
    }
    std::istringstream h(header), v(values);
    std::string name, value;
    TcpSegments s;
    bool in = false, out = false;
    while (h >> name && v >> value) {
        if (name == "InSegs") {
            s.in = std::stoull(value);
            in = true;
        } else if (name == "OutSegs") {
            s.out = std::stoull(value);
            out = true;
        }
    }
    if (!in || !out)
        throw std::runtime_error("no Tcp InSegs/OutSegs in /proc/net/snmp");
    return s;
}

void fill_pattern(uint32_t seed, uint64_t offset, unsigned char* buf, size_t len)
{
    // Every 8-byte word of the stream is a hash of (seed, word index): a shifted or foreign byte shows.
    const uint64_t key = static_cast<uint64_t>(seed) << 40;
    size_t i = 0;
    while (i < len) {
        const uint64_t pos = offset + i;
        const uint64_t word = splitmix64(key ^ (pos >> 3));
        unsigned char bytes[8];
        std::memcpy(bytes, &word, 8);
        size_t from = pos & 7;
        while (from < 8 && i < len)
            buf[i++] = bytes[from++];
    }
}

// --- transfers ------------------------------------------------------------------------------------------------------

std::string TransferReport::encode() const
{
    return "report ok=" + std::to_string(ok ? 1 : 0) + " received=" + std::to_string(received) +
           " in=" + std::to_string(segs_in) + " out=" + std::to_string(segs_out) + " error=" + error;
}

TransferReport TransferReport::decode(const std::string& text)
{
    TransferReport r;
    if (text.rfind("report ", 0) != 0) {
        r.error = text;
        return r;
    }
    std::istringstream in(text.substr(7));
    std::string field;
    while (in >> field) {
        const auto eq = field.find('=');
        const std::string key = field.substr(0, eq), value = field.substr(eq + 1);
        if (key == "ok")
            r.ok = value == "1";
        else if (key == "received")
            r.received = std::stoull(value);
        else if (key == "in")
            r.segs_in = std::stoull(value);
        else if (key == "out")
            r.segs_out = std::stoull(value);
        else if (key == "error") {
            r.error = text.substr(text.find(" error=") + 7);
            break;
        }
    }
    return r;
}

sockredir::base::Fd listen_on(int family, const std::string& addr, uint16_t port, bool v6only)
{
    Fd server(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!server)
        throw_errno("socket");
    const int one = 1, zero = 0;
    ::setsockopt(server.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6 &&
        ::setsockopt(server.get(), IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof one) != 0)
        throw_errno("IPV6_V6ONLY");
    const SockAddr a = make_addr(family, addr, port);
    if (::bind(server.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.len) != 0)
        throw_errno("bind " + addr);
    if (::listen(server.get(), 4) != 0)
        throw_errno("listen");
    return server;
}

uint16_t local_port(int fd)
{
    return port_of(fd);
}

sockredir::base::Fd connect_to(int family, const std::string& addr, uint16_t port, const std::string& bind_addr,
                               uint16_t bind_port)
{
    const SockAddr to = make_addr(family, addr, port);
    for (int attempt = 0;; ++attempt) {
        Fd c(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!c)
            throw_errno("client socket");
        if (!bind_addr.empty() || bind_port != 0) {
            const int one = 1;
            ::setsockopt(c.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            const SockAddr a =
                make_addr(family, bind_addr.empty() ? (family == AF_INET ? "0.0.0.0" : "::") : bind_addr, bind_port);
            if (::bind(c.get(), reinterpret_cast<const sockaddr*>(&a.storage), a.len) != 0)
                throw_errno("client bind");
        }
        // Connected in non-blocking mode, as event-driven clients do: sockredir keeps a client socket that is
        // blocking when its connection is established off the map (its reads would meet tcp_bpf's EAGAIN). The
        // tests then send in blocking mode and read with poll + MSG_DONTWAIT (recv_blocking).
        set_nonblocking(c.get(), true);
        int rc = ::connect(c.get(), reinterpret_cast<const sockaddr*>(&to.storage), to.len);
        if (rc != 0 && errno == EINPROGRESS) {
            pollfd p{c.get(), POLLOUT, 0};
            int err = 0;
            socklen_t len = sizeof err;
            if (::poll(&p, 1, 10000) == 1 && ::getsockopt(c.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0) {
                errno = err;
                rc = err == 0 ? 0 : -1;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (rc == 0) {
            set_nonblocking(c.get(), false);
            return c;
        }
        // A fresh veth can take a moment before its route and neighbour work.
        const bool transient = errno == ENETUNREACH || errno == EHOSTUNREACH || errno == ECONNREFUSED;
        if (!transient || attempt >= 50)
            throw_errno("connect " + addr + " port " + std::to_string(port));
        sleep_ms(40);
    }
}

void throw_errno(const std::string& what)
{
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

void send_all(int fd, const void* data, size_t len)
{
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t done = 0; done < len;) {
        const ssize_t w = ::send(fd, p + done, len - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            throw_errno("send");
        done += static_cast<size_t>(w);
    }
}

void send_pattern(int fd, uint32_t seed, uint64_t offset, uint64_t bytes)
{
    // Writes of 256 KiB: a bulk transfer that redirection carries faster than TCP. A stream of writes of 64 KiB or
    // less that nobody answers is moved to TCP after 64 of them (the adaptive path, bpf/sockredir_shared.h).
    std::vector<unsigned char> buf(256 * 1024);
    uint64_t sent = 0;
    while (sent < bytes) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), bytes - sent));
        fill_pattern(seed, offset + sent, buf.data(), n);
        send_all(fd, buf.data(), n);
        sent += n;
    }
}

namespace {
std::atomic<uint64_t> g_spurious_eagain{0};
} // namespace

ssize_t recv_blocking(int fd, void* buf, size_t len, int flags)
{
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, -1) < 0 && errno != EINTR)
            return -1;
        const ssize_t n = ::recv(fd, buf, len, flags | MSG_DONTWAIT);
        if (n >= 0 || (errno != EINTR && errno != EAGAIN))
            return n;
        if (errno == EAGAIN)
            ++g_spurious_eagain;
    }
}

bool recv_exact(int fd, void* buf, size_t len)
{
    auto* p = static_cast<unsigned char*>(buf);
    for (size_t got = 0; got < len;) {
        const ssize_t n = recv_blocking(fd, p + got, len - got);
        if (n <= 0)
            return false;
        got += static_cast<size_t>(n);
    }
    return true;
}

void set_nonblocking(int fd, bool on)
{
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) != 0)
        throw_errno("fcntl O_NONBLOCK");
}

void warm_up_client(int client)
{
    char byte = 'w';
    send_all(client, &byte, 1);
    if (recv_blocking(client, &byte, 1) != 1)
        throw_errno("warm-up: the client's read");
}

void warm_up_server(int server)
{
    char byte = 0;
    if (recv_blocking(server, &byte, 1) != 1)
        throw_errno("warm-up: the server's read");
    send_all(server, &byte, 1);
}

uint64_t spurious_eagain()
{
    return g_spurious_eagain;
}

uint64_t receive_verified(int fd, uint32_t seed, const std::function<void(uint64_t)>& on_progress)
{
    std::vector<unsigned char> buf(256 * 1024), expect(256 * 1024);
    uint64_t received = 0;
    for (;;) {
        const ssize_t n = recv_blocking(fd, buf.data(), buf.size());
        if (n < 0)
            throw_errno("recv");
        if (n == 0)
            return received;
        fill_pattern(seed, received, expect.data(), static_cast<size_t>(n));
        if (std::memcmp(buf.data(), expect.data(), static_cast<size_t>(n)) != 0) {
            size_t at = 0;
            while (buf[at] == expect[at])
                ++at;
            throw std::runtime_error("data differs at stream offset " + std::to_string(received + at));
        }
        received += static_cast<uint64_t>(n);
        if (on_progress)
            on_progress(received);
    }
}

TransferReport transfer(const TransferSpec& spec)
{
    TransferReport report;
    const TcpSegments before = read_tcp_segments();
    Fd server = listen_on(spec.family, spec.server_addr, spec.server_port, !spec.v6only_off);
    const uint16_t port = port_of(server.get());

    std::mutex mu;
    std::condition_variable cv;
    bool accepted = false;
    std::string client_error;
    std::thread client([&] {
        try {
            const int family = spec.client_family != 0 ? spec.client_family : spec.family;
            Fd c = connect_to(family, spec.connect_addr, port, spec.client_bind, spec.client_port);
            // Send only once the server side is established too, so the first message finds its peer.
            {
                std::unique_lock lock(mu);
                cv.wait(lock, [&] { return accepted; });
            }
            warm_up_client(c.get());
            if (spec.after_connect)
                spec.after_connect();
            send_pattern(c.get(), spec.seed, 0, spec.bytes);
            ::shutdown(c.get(), SHUT_WR);
            // Wait for the server's FIN so that the whole teardown is in the counters.
            char tmp[256];
            while (recv_blocking(c.get(), tmp, sizeof tmp) > 0) {
            }
        } catch (const std::exception& e) {
            std::lock_guard lock(mu);
            client_error = e.what();
            // Wake the accept() below, which would otherwise wait for a client that never comes.
            ::shutdown(server.get(), SHUT_RDWR);
        }
    });

    std::string server_error;
    try {
        Fd conn(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
        {
            std::lock_guard lock(mu);
            accepted = true;
        }
        cv.notify_all();
        if (!conn)
            throw_errno("accept");
        warm_up_server(conn.get());
        report.received = receive_verified(conn.get(), spec.seed);
    } catch (const std::exception& e) {
        server_error = e.what();
        {
            std::lock_guard lock(mu);
            accepted = true;
        }
        cv.notify_all();
    }
    client.join();
    server.reset();
    // The last ACK of the teardown is processed in softirq context right after the close.
    sleep_ms(20);
    const TcpSegments after = read_tcp_segments();
    report.segs_in = after.in - before.in;
    report.segs_out = after.out - before.out;
    report.error = !server_error.empty() ? server_error : client_error;
    if (report.error.empty() && report.received != spec.bytes)
        report.error = "received " + std::to_string(report.received) + " of " + std::to_string(spec.bytes);
    report.ok = report.error.empty();
    return report;
}

TransferReport transfer_in_netns(const std::string& cgroup, const TransferSpec& spec)
{
    Child child = spawn([&](const Channel& ch) {
        enter_cgroup(cgroup);
        enter_private_netns();
        ch.send(transfer(spec).encode());
        return 0;
    });
    const auto report = TransferReport::decode(child.channel().receive(60000));
    child.wait();
    return report;
}

// --- kernel objects -------------------------------------------------------------------------------------------------

ObjectIds pinned_ids(const std::string& pin_dir)
{
    static const char* const kProgs[] = {SOCKREDIR_PROG_SOCKOPS, SOCKREDIR_PROG_MSG, SOCKREDIR_PROG_SETSOCKOPT,
                                         SOCKREDIR_PROG_GETSOCKOPT};
    static const char* const kMaps[] = {SOCKREDIR_MAP_SOCKS,      SOCKREDIR_MAP_COUNTERS, SOCKREDIR_MAP_CONFIG,
                                        SOCKREDIR_MAP_SOCK_STATE, SOCKREDIR_MAP_FLOWS,    SOCKREDIR_MAP_LEARNED};
    namespace sys = sockredir::ebpf::sys;
    ObjectIds ids;
    for (const char* name : kProgs)
        ids.progs.insert(sys::prog_info(sys::obj_get(pin_dir + "/" + name).get()).id);
    // The observer is whichever variant this kernel loaded and attached (tp_btf here: fexit is refused, kernel-notes
    // section 6); attach pins that one alone.
    size_t observers = 0;
    for (const char* name : sockredir::app::kObserverPrograms)
        if (::access((pin_dir + "/" + name).c_str(), F_OK) == 0) {
            ids.progs.insert(sys::prog_info(sys::obj_get(pin_dir + "/" + name).get()).id);
            ++observers;
        }
    if (observers != 1)
        throw std::runtime_error(std::to_string(observers) + " observer programs pinned in " + pin_dir);
    for (const char* name : kMaps)
        ids.maps.insert(sys::map_info(sys::obj_get(pin_dir + "/" + name).get()).id);
    return ids;
}

ObjectIds snapshot_ids()
{
    ObjectIds ids;
    for (auto id : sockredir::ebpf::sys::all_prog_ids())
        ids.progs.insert(id);
    for (auto id : sockredir::ebpf::sys::all_map_ids())
        ids.maps.insert(id);
    return ids;
}

ObjectIds leftover_ours(const ObjectIds& before, int timeout_ms)
{
    ObjectIds ours;
    for (int waited = 0;; waited += 100) {
        ours = {};
        const ObjectIds now = snapshot_ids();
        for (auto id : now.progs) {
            if (before.progs.count(id) != 0)
                continue;
            try {
                const auto fd = sockredir::ebpf::sys::prog_fd_by_id(id);
                if (is_our_prog_name(sockredir::ebpf::sys::prog_info(fd.get()).name))
                    ours.progs.insert(id);
            } catch (const sockredir::base::Error&) {
                // Freed between the walk and the lookup.
            }
        }
        for (auto id : now.maps) {
            if (before.maps.count(id) != 0)
                continue;
            try {
                const auto fd = sockredir::ebpf::sys::map_fd_by_id(id);
                if (is_our_map_name(sockredir::ebpf::sys::map_info(fd.get()).name))
                    ours.maps.insert(id);
            } catch (const sockredir::base::Error&) {
            }
        }
        // Maps are freed from a workqueue after the last reference goes: give them time.
        if ((ours.progs.empty() && ours.maps.empty()) || waited >= timeout_ms)
            return ours;
        sleep_ms(100);
    }
}

std::string describe(const ObjectIds& ids)
{
    std::string s = "progs [";
    for (auto id : ids.progs)
        s += " " + std::to_string(id);
    s += " ] maps [";
    for (auto id : ids.maps)
        s += " " + std::to_string(id);
    return s + " ]";
}

std::vector<uint32_t> sockops_attached(const std::string& cgroup)
{
    Fd fd(::open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd)
        throw_errno("opening " + cgroup);
    return sockredir::ebpf::sys::prog_query(fd.get(), BPF_CGROUP_SOCK_OPS);
}

std::vector<std::string> list_dir(const std::string& dir)
{
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr)
        return names;
    while (dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..")
            names.push_back(name);
    }
    ::closedir(d);
    return names;
}

} // namespace e2e
