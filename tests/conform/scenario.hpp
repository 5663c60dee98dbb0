// The conformance suite's scenario API: a scenario is a socket-API story told twice, on plain loopback TCP and with
// sockredir attached, by a program that cannot tell which. It records what an application could observe (return
// values, errno names, byte counts, data integrity, readiness) in an Obs; the harness (conform.cpp) compares the two.
//
// Rules for a scenario:
// - Record only what an application can observe and what plain TCP makes deterministic: never a timing, never an
//   address or port, never a count that depends on scheduling (how many bytes one recv() returned on a stream, unless
//   TCP guarantees it). Where TCP's answer depends on timing, shape the story so it does not (wait for the peer,
//   sleep before the signal) or record a coarser fact ("held back within 16 MiB": yes/no).
// - Every byte is checked: data comes from pattern(), is verified by check_pattern() and the verdict is recorded.
// - Bounded in time: waits use timeouts (wait_readable(), SO_RCVTIMEO) well under the harness's limit per scenario
//   (kScenarioSeconds); a wait that runs out is recorded ("timeout"), never hangs.
// - Loopback only (127.0.0.1, ::1); the harness runs the whole suite in a private network namespace.
// - Clean up: Fd closes on scope exit; threads are joined; a forked child is killed by its pid and reaped.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace conform {

inline constexpr int kScenarioSeconds = 20;

// An owned file descriptor (the suite links nothing of sockredir: it is a plain socket program).
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd();
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }
    void close();
    explicit operator bool() const { return fd_ >= 0; }

private:
    int fd_ = -1;
};

// What a scenario observed, in order. Two runs agree when their items are equal.
class Obs {
public:
    void note(std::string_view key, std::string_view value);
    void note(std::string_view key, long long value);
    void flag(std::string_view key, bool value) { note(key, value ? "yes" : "no"); }
    // A syscall result: "N" for r >= 0, else the errno name ("EAGAIN") read from errno.
    void ret(std::string_view key, long long r);
    const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

private:
    std::vector<std::pair<std::string, std::string>> items_;
};

// The errno name of e ("EAGAIN", "EINTR", ...; "E<number>" when unknown).
std::string errno_name(int e);

enum class Family {
    v4,   // AF_INET listener and client on 127.0.0.1
    v6,   // AF_INET6 listener (IPV6_V6ONLY) and client on ::1
    dual, // AF_INET6 dual-stack listener on ::, AF_INET client to 127.0.0.1 (the server sees ::ffff:127.0.0.1)
};

struct PairOptions {
    Family family = Family::v4;
    bool client_nonblock = false; // O_NONBLOCK on the connected client after connect()
    bool server_nonblock = false; // accept4(SOCK_NONBLOCK)
    // Called on the listening socket before listen() (TCP_DEFER_ACCEPT, TCP_FASTOPEN, SO_RCVBUF, ...).
    std::function<void(int)> on_listener;
    // Called on the client socket before connect() (SO_SNDBUF, TCP_NODELAY, ...).
    std::function<void(int)> on_client;
    bool accept = true; // false: leave the connection in the accept queue (pair.server stays empty)
    // After accept: one byte each way, each end reading in its own mode (poll + recv when non-blocking, a blocking
    // recv otherwise), as the application's first exchange would. sockredir redirects a direction only once its
    // reader has been seen reading, and reading in a way the redirect path serves as TCP does: without this
    // first exchange no story would ever run redirected; with it, a story on non-blocking sockets runs redirected
    // from its first byte and one on blocking sockets runs on TCP (sockredir keeps blocking readers off).
    bool warm_up = true;
};

// A connected TCP pair on loopback; the listener is kept open until the Pair goes.
struct Pair {
    Fd listener;
    Fd client;
    Fd server;
    // accept4() on the listener with the options' flags (for PairOptions::accept = false).
    void accept_now(const PairOptions& options);
};

// A loopback port of this run of this scenario's own, for a listener (make_pair takes its ports from here too). Each
// run of each scenario has a range of its own, never an ephemeral port: sockredir remembers per server port how its
// readers read (a blocking reader keeps later connections to that port off the map), so a port an earlier scenario
// used could put a later one on TCP by chance. Throws std::runtime_error when the run's range is used up.
uint16_t next_port();

// Listens on a port of next_port(), connects (in the client's mode), accepts, warms up. Throws
// std::runtime_error on failure. A story runs redirected only when both ends are non-blocking: sockredir keeps a
// connection with a blocking reader on TCP (kernel-notes.md section 1).
Pair make_pair(const PairOptions& options = {});
// The warm-up of PairOptions::warm_up, for pairs made by hand: one byte each way, each end reading in its own mode.
void warm_up_read_write(int client, int server);

// The test stream: byte at stream offset `offset` of stream `seed`.
void pattern(uint32_t seed, uint64_t offset, unsigned char* buf, size_t len);
bool check_pattern(uint32_t seed, uint64_t offset, const unsigned char* buf, size_t len);

// send() until all of [seed, offset, offset + len) is out (blocking socket; MSG_NOSIGNAL). Returns bytes sent, or -1
// with errno after the first error other than EINTR.
long long send_pattern(int fd, uint32_t seed, uint64_t offset, size_t len);
// Reads exactly len bytes of the pattern (looping over short reads and EINTR, waiting up to timeout_ms in total on a
// non-blocking socket); records nothing. Returns bytes read, and sets *intact to whether they matched.
long long recv_pattern(int fd, uint32_t seed, uint64_t offset, size_t len, bool* intact, int timeout_ms = 5000);

// poll() for POLLIN (or POLLOUT) up to timeout_ms: true when ready.
bool wait_readable(int fd, int timeout_ms);
bool wait_writable(int fd, int timeout_ms);

void set_nonblock(int fd, bool on);
void sleep_ms(int ms);

// A scenario: a name (stable: it keys docs/compatibility.md and tests/conform/known-differences.txt), the row title,
// the group it belongs to in the table, and the story.
struct Scenario {
    const char* name;
    const char* group;
    const char* title;
    void (*run)(Obs&);
};

const std::vector<Scenario>& scenarios();

struct Registrar {
    explicit Registrar(const Scenario& scenario);
};

} // namespace conform

// CONFORM_SCENARIO(name, "group", "title") { ... obs.note(...); }
#define CONFORM_SCENARIO(id, group, title)                                                                             \
    static void conform_##id(::conform::Obs& obs);                                                                     \
    static const ::conform::Registrar conform_reg_##id({#id, group, title, conform_##id});                             \
    static void conform_##id([[maybe_unused]] ::conform::Obs& obs)
