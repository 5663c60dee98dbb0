// run --metrics: a bounded HTTP/1.x endpoint in run's own thread, driven by its poll(2) loop. GET /metrics only;
// every response closes its connection. Safe against slow and hostile clients: a deadline per connection, a bound on
// the request's size and on the connections served at once.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "loader/base/fd.hpp"

namespace sockredir::app {

struct HttpLimits {
    size_t max_clients = 16;                 // served at once; one more is answered 503 and closed at once
    size_t max_request = 8192;               // bytes of request line and headers; more is answered 431
    std::chrono::milliseconds timeout{5000}; // from accept to the last byte of the response
};

// "HOST:PORT": an IPv4 address, or an IPv6 one in brackets ([::1]:9477); PORT 0 to 65535 (0: any free port). The
// usage error when it is not one, empty when it is.
std::string check_listen_address(const std::string& address);

class MetricsServer {
public:
    // Binds and listens on `address` (check_listen_address's form); throws base::Error in one line when it cannot.
    // `body` makes the metrics for each GET /metrics; an exception from it is answered 500.
    MetricsServer(const std::string& address, std::function<std::string()> body, HttpLimits limits = {});

    // The address it listens on, with the port the kernel chose for port 0: "127.0.0.1:40123", "[::1]:9477".
    const std::string& bound() const noexcept { return bound_; }

    // Appends the descriptors to poll and their events.
    void add_pollfds(std::vector<pollfd>& fds) const;
    // Handles what poll returned for the descriptors add_pollfds appended, from fds[first] on.
    void handle(const std::vector<pollfd>& fds, size_t first);
    // Milliseconds until the nearest deadline of a connection, -1 when none is open.
    int poll_timeout_ms() const;

    // Served so far, for tests and run's last line.
    uint64_t responses() const noexcept { return responses_; }

private:
    struct Client {
        base::Fd fd;
        std::chrono::steady_clock::time_point deadline;
        std::string in;
        std::string out; // the response, once the request is complete
        size_t written = 0;
        // The response is out and the writing side shut: what the client still sends is read and dropped until it
        // closes (closing with unread input would reset the connection and could lose the response).
        bool done = false;
    };

    void accept_all();
    // Reads what the client sent; makes the response once the request is complete. False: close it.
    bool read_request(Client& c);
    // Writes what it can. False: close it (failed).
    bool write_response(Client& c);
    // Reads and drops what a client sends after its response. False: close it (it closed, or failed).
    static bool drain(Client& c);
    std::string respond(const std::string& request);

    base::Fd listener_;
    std::string bound_;
    std::function<std::string()> body_;
    HttpLimits limits_;
    std::vector<Client> clients_;
    // Out of descriptors or memory: the listener rests until then instead of waking poll at once, again and again.
    std::chrono::steady_clock::time_point paused_until_{};
    uint64_t responses_ = 0;
};

} // namespace sockredir::app
