// Isolation and traffic harness of the privileged end-to-end tests: own cgroup, own bpffs, private netns children.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "loader/app/status.hpp"
#include "loader/base/fd.hpp"
#include "tests/skip.hpp"

namespace e2e {

// Why the kernel tests cannot run here (not root, no BPF, no cgroup2), or nothing.
std::optional<std::string> skip_reason();

// The first line of every kernel test: where the kernel tests cannot run, the case ends as SKIP with the reason
// (tests/skip.hpp), never as a pass; under CI=true it fails.
#define E2E_REQUIRE_KERNEL()                                                                                           \
    do {                                                                                                               \
        if (const auto why_ = ::e2e::skip_reason())                                                                    \
            SKIP_TEST_CASE(*why_);                                                                                     \
    } while (0)

// Handshake and teardown of one connection seen from both ends are under 10 segments each way; a redirected
// 16 MiB transfer must stay near that. On TCP the same 16 MiB needs at least 256 skbs of 64 KiB (the lo MTU;
// the kernel counts a GSO/GRO skb once), so a plain transfer is at least 128 with room to spare.
inline constexpr uint64_t kRedirectedMaxSegments = 50;
inline constexpr uint64_t kPlainMinSegments = 128;

inline uint64_t counter(const sockredir::app::Status& s, int index)
{
    return s.counters[index];
}

void sleep_ms(int ms);
// lstat(2) succeeds: the path exists (a pin, a pin dir, a staging dir).
bool exists(const std::string& path);
// The value of " NAME=value" in a child's report line, up to a space or a newline; empty when absent.
std::string report_field(const std::string& text, const std::string& name);

std::string bin_path();    // $SOCKREDIR_BIN
std::string object_path(); // $SOCKREDIR_BPF_OBJECT

struct RunResult {
    int exit_code = -1; // -1 when killed by a signal
    int signal = 0;
    std::string out;
    std::string err;
};

struct RunOptions {
    std::vector<std::string> env; // extra NAME=VALUE entries
    std::optional<uid_t> uid;     // drop to this uid (and gid) before exec
    std::string join_procs;       // a cgroup.procs file (v1 or v2) the child joins before exec
};

// Runs sockredir-min with args and collects its exit status and both streams.
RunResult run_bin(const std::vector<std::string>& args, const RunOptions& options = {});

// Number of lines of a stderr text (a final line without '\n' counts).
int line_count(const std::string& text);

// A cgroup of our own under the cgroup2 mount; removed in the destructor.
class TestCgroup {
public:
    TestCgroup();
    ~TestCgroup();
    TestCgroup(const TestCgroup&) = delete;
    TestCgroup& operator=(const TestCgroup&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// A private bpffs instance mounted on a fresh temporary directory; unmounted and removed in the destructor.
class Bpffs {
public:
    Bpffs();
    ~Bpffs();
    Bpffs(const Bpffs&) = delete;
    Bpffs& operator=(const Bpffs&) = delete;
    const std::string& root() const { return root_; }
    std::string pin_dir() const { return root_ + "/sockredir"; }

private:
    std::string root_;
};

// Everything one test owns. Members are destroyed in reverse order: detach, unmount, remove the cgroup.
struct Sandbox {
    TestCgroup cgroup;
    Bpffs bpffs;
    ~Sandbox();
    std::string pin_dir() const { return bpffs.pin_dir(); }
    std::vector<std::string> attach_args() const;
    RunResult attach(const RunOptions& options = {}) const;
    RunResult detach(const RunOptions& options = {}) const;
};

// A message pipe between the test and one forked child (SOCK_SEQPACKET: one send, one receive).
class Channel {
public:
    Channel() = default;
    explicit Channel(int fd) : fd_(fd) {}
    Channel(Channel&& other) noexcept;
    Channel& operator=(Channel&& other) noexcept;
    ~Channel();
    void send(const std::string& message) const;
    // Waits for the next message; throws on EOF or after timeout_ms.
    std::string receive(int timeout_ms = 30000) const;

private:
    int fd_ = -1;
};

// A forked child. The destructor SIGKILLs it (by pid) if still running and reaps it.
class Child {
public:
    Child() = default;
    Child(pid_t pid, Channel channel) : pid_(pid), channel_(std::move(channel)) {}
    Child(Child&& other) noexcept;
    Child& operator=(Child&& other) = delete;
    ~Child();
    pid_t pid() const { return pid_; }
    const Channel& channel() const { return channel_; }
    // Waits for the exit; returns the exit code, or -signal.
    int wait(int timeout_ms = 60000);

private:
    pid_t pid_ = -1;
    Channel channel_;
};

// Forks; the child runs body(channel) and _exits with its result (1 on an exception, whose text it sends).
Child spawn(const std::function<int(const Channel&)>& body);

// In a child: move this process into the cgroup, then into a new network namespace with lo up.
void enter_cgroup(const std::string& cgroup);
void enter_private_netns();
// Runs a program (e.g. ip) and throws unless it exits 0.
void run_checked(const std::vector<std::string>& argv);

struct TcpSegments {
    uint64_t in = 0;
    uint64_t out = 0;
};
// Tcp InSegs/OutSegs of this process's network namespace (/proc/net/snmp).
TcpSegments read_tcp_segments();

// The byte at offset `offset` of the test stream with seed `seed`.
void fill_pattern(uint32_t seed, uint64_t offset, unsigned char* buf, size_t len);

// Socket building blocks, for tests that put the two ends in different processes.
// A listening TCP socket bound to addr:port (port 0: any); v6only applies to AF_INET6 only.
sockredir::base::Fd listen_on(int family, const std::string& addr, uint16_t port, bool v6only = true);
uint16_t local_port(int fd);
// Connects to addr:port, optionally from bind_addr:bind_port; retries while the route is not up yet.
sockredir::base::Fd connect_to(int family, const std::string& addr, uint16_t port, const std::string& bind_addr = {},
                               uint16_t bind_port = 0);
// Waits for data with poll() and reads with MSG_DONTWAIT, as an event-driven application does: sockredir redirects
// only to readers it has seen read in non-blocking mode (a blocking read meets tcp_bpf_recvmsg()'s EAGAIN on any
// wake-up without data, kernel-notes.md section 1). EAGAIN after poll() is retried and counted in
// spurious_eagain() (this process).
ssize_t recv_blocking(int fd, void* buf, size_t len, int flags = 0);
void set_nonblocking(int fd, bool on);
// recv_blocking until len bytes (MSG_WAITALL's promise, kept by the caller); false on EOF or an error.
bool recv_exact(int fd, void* buf, size_t len);
// One byte each way, read as above: both readers are then known to sockredir and have read everything sent by TCP,
// so what follows is redirected from its first byte (a direction starts on TCP: README, "How it decides"). The
// client sends and waits for the answer; the server reads and answers.
void warm_up_client(int client);
void warm_up_server(int server);
uint64_t spurious_eagain();

// Throws std::runtime_error "WHAT: strerror(errno)".
[[noreturn]] void throw_errno(const std::string& what);
// send() until all `len` bytes are out (MSG_NOSIGNAL), retrying EINTR; throws on any other error.
void send_all(int fd, const void* data, size_t len);
// Sends `bytes` of the pattern with `seed`, starting at stream offset `offset`.
void send_pattern(int fd, uint32_t seed, uint64_t offset, uint64_t bytes);
// Reads to EOF and checks every byte against the pattern; throws at the first wrong byte.
// on_progress, when given, is called with the count of verified bytes after each read.
uint64_t receive_verified(int fd, uint32_t seed, const std::function<void(uint64_t)>& on_progress = {});

struct TransferSpec {
    int family = 0;           // AF_INET or AF_INET6 of the server socket
    std::string server_addr;  // bind address of the server
    std::string connect_addr; // where the client connects
    int client_family = 0;    // 0: same as family
    std::string client_bind;  // optional bind address of the client
    uint16_t server_port = 0; // 0: any
    uint16_t client_port = 0; // 0: any
    bool v6only_off = false;  // IPV6_V6ONLY = 0 on the server
    uint64_t bytes = 16ULL << 20;
    uint32_t seed = 1;
    // Called in the child between connect and the first byte sent (synchronization points).
    std::function<void()> after_connect;
};

struct TransferReport {
    bool ok = false;
    uint64_t received = 0;
    uint64_t segs_in = 0;
    uint64_t segs_out = 0;
    std::string error;
    std::string encode() const;
    static TransferReport decode(const std::string& text);
};

// In the current netns: server + client thread, 'bytes' of the pattern sent and verified at the receiver,
// segments counted from before the listen to after both sockets are closed.
TransferReport transfer(const TransferSpec& spec);

// Runs transfer() in a fresh child in the cgroup and a private netns; the report comes back over the channel.
TransferReport transfer_in_netns(const std::string& cgroup, const TransferSpec& spec);

// Sets of kernel program and map ids (BPF_PROG_GET_NEXT_ID / BPF_MAP_GET_NEXT_ID).
struct ObjectIds {
    std::set<uint32_t> progs;
    std::set<uint32_t> maps;
};
ObjectIds snapshot_ids();
// The kernel ids of every program and map an attachment pinned in pin_dir. Other tests on this kernel make objects
// of the same names: these ids, not names, are what must be gone after a detach.
ObjectIds pinned_ids(const std::string& pin_dir);
// Ours (by name) among the ids that were not there in `before`; polls up to timeout_ms for them to be freed.
// Kernel frees maps asynchronously, so a non-empty answer is retried until timeout_ms has passed.
ObjectIds leftover_ours(const ObjectIds& before, int timeout_ms = 5000);
std::string describe(const ObjectIds& ids);

// Program ids attached to the cgroup for BPF_CGROUP_SOCK_OPS.
std::vector<uint32_t> sockops_attached(const std::string& cgroup);

// Names in a directory (without . and ..), empty when it does not exist.
std::vector<std::string> list_dir(const std::string& dir);

} // namespace e2e
