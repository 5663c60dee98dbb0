// MetricsServer: non-blocking sockets, one poll loop (run's), responses that always close.
#include "loader/app/http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
using Clock = std::chrono::steady_clock;

namespace {

struct ListenAddress {
    sockaddr_storage addr{};
    socklen_t len = 0;
};

// The usage error of `text`, or empty; `out` gets the address.
std::string parse_listen_address(const std::string& text, ListenAddress& out)
{
    const std::string error = "--metrics needs HOST:PORT, an IPv4 address or [IPv6] and a port 0-65535, like "
                              "127.0.0.1:9477 or [::1]:9477";
    std::string host, port;
    if (!text.empty() && text[0] == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return error;
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos)
            return error;
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    const auto p = base::parse_decimal(port, 5);
    if (!p || *p > 65535)
        return error;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.addr);
    if (text[0] != '[' && ::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<uint16_t>(*p));
        out.len = sizeof *v4;
        return {};
    }
    if (text[0] == '[' && ::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<uint16_t>(*p));
        out.len = sizeof *v6;
        return {};
    }
    return error;
}

std::string format_bound(const sockaddr_storage& a)
{
    char host[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET6) {
        const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
        ::inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(v6->sin6_port));
    }
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(v4->sin_port));
}

std::string response(int code, const char* reason, const std::string& body,
                     const char* type = "text/plain; charset=utf-8", const char* extra = "")
{
    return "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
           "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "Connection: close\r\n\r\n" + body;
}

} // namespace

std::string check_listen_address(const std::string& address)
{
    ListenAddress a;
    return parse_listen_address(address, a);
}

MetricsServer::MetricsServer(const std::string& address, std::function<std::string()> body, HttpLimits limits)
    : body_(std::move(body)), limits_(limits)
{
    ListenAddress a;
    if (const auto error = parse_listen_address(address, a); !error.empty())
        throw Error(error);
    listener_ = Fd(::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listener_)
        throw Error("metrics: creating a socket", errno);
    const int one = 1;
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a.addr.ss_family == AF_INET6)
        ::setsockopt(listener_.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a.addr), a.len) != 0)
        throw Error("metrics: cannot listen on " + address, errno);
    if (::listen(listener_.get(), 64) != 0)
        throw Error("metrics: cannot listen on " + address, errno);
    sockaddr_storage got{};
    socklen_t len = sizeof got;
    if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&got), &len) != 0)
        throw Error("metrics: getsockname", errno);
    bound_ = format_bound(got);
}

void MetricsServer::add_pollfds(std::vector<pollfd>& fds) const
{
    fds.push_back({listener_.get(), static_cast<short>(Clock::now() < paused_until_ ? 0 : POLLIN), 0});
    for (const auto& c : clients_)
        fds.push_back({c.fd.get(), static_cast<short>(c.out.empty() || c.done ? POLLIN : POLLOUT), 0});
}

int MetricsServer::poll_timeout_ms() const
{
    const bool paused = Clock::now() < paused_until_;
    if (clients_.empty() && !paused)
        return -1;
    auto nearest = paused ? paused_until_ : clients_.front().deadline;
    for (const auto& c : clients_)
        nearest = std::min(nearest, c.deadline);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(nearest - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left + 1, 0, 60000));
}

void MetricsServer::handle(const std::vector<pollfd>& fds, size_t first)
{
    // The clients first, in the order add_pollfds gave them; the ones to close are dropped after.
    std::vector<bool> keep(clients_.size(), true);
    const auto now = Clock::now();
    for (size_t i = 0; i < clients_.size() && first + 1 + i < fds.size(); ++i) {
        Client& c = clients_[i];
        const short ev = fds[first + 1 + i].revents;
        if (c.done && (ev & (POLLIN | POLLHUP | POLLERR)))
            keep[i] = drain(c);
        else if (ev & (POLLIN | POLLHUP | POLLERR))
            keep[i] = c.out.empty() ? read_request(c) : write_response(c);
        else if (ev & POLLOUT)
            keep[i] = write_response(c);
        if (keep[i] && now >= c.deadline)
            keep[i] = false; // too slow: closed without a word
    }
    std::vector<Client> kept;
    for (size_t i = 0; i < clients_.size(); ++i)
        if (keep[i])
            kept.push_back(std::move(clients_[i]));
    clients_ = std::move(kept);
    if (first < fds.size() && (fds[first].revents & POLLIN))
        accept_all();
}

void MetricsServer::accept_all()
{
    for (int i = 0; i < 64; ++i) {
        Fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                paused_until_ = Clock::now() + std::chrono::milliseconds(100);
                return;
            }
            if (errno == ECONNABORTED || errno == EINTR)
                continue; // that one connection
            return;       // EAGAIN: none left
        }
        if (clients_.size() >= limits_.max_clients) {
            const std::string busy = response(503, "Service Unavailable", "too many connections\n");
            [[maybe_unused]] auto n = ::send(fd.get(), busy.data(), busy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            continue;
        }
        Client c;
        c.fd = std::move(fd);
        c.deadline = Clock::now() + limits_.timeout;
        clients_.push_back(std::move(c));
    }
}

bool MetricsServer::read_request(Client& c)
{
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        if (n == 0)
            return false; // gone before its request was complete
        c.in.append(buf, static_cast<size_t>(n));
        auto end = c.in.find("\r\n\r\n");
        if (end == std::string::npos)
            end = c.in.find("\n\n");
        if (end != std::string::npos && end <= limits_.max_request) {
            c.out = respond(c.in.substr(0, end));
            return write_response(c);
        }
        if (c.in.size() > limits_.max_request) {
            c.out = response(431, "Request Header Fields Too Large", "request too large\n");
            return write_response(c);
        }
    }
}

bool MetricsServer::write_response(Client& c)
{
    while (c.written < c.out.size()) {
        const ssize_t n =
            ::send(c.fd.get(), c.out.data() + c.written, c.out.size() - c.written, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        c.written += static_cast<size_t>(n);
    }
    if (!c.done) {
        ++responses_;
        ::shutdown(c.fd.get(), SHUT_WR);
        c.done = true;
        // A second at most to close its side after the response.
        c.deadline = std::min(c.deadline, Clock::now() + std::chrono::seconds(1));
    }
    return drain(c);
}

bool MetricsServer::drain(Client& c)
{
    char buf[4096];
    // At most 64 KiB a round: a client that keeps sending cannot hold the loop; its deadline closes it.
    for (int i = 0; i < 16; ++i) {
        const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0)
            return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    }
    return true;
}

std::string MetricsServer::respond(const std::string& request)
{
    // The request line: METHOD SP TARGET SP HTTP/1.x
    const auto eol = request.find_first_of("\r\n");
    const std::string line = request.substr(0, eol);
    const auto sp1 = line.find(' ');
    const auto sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
    if (sp1 == std::string::npos || sp2 == std::string::npos || line.compare(sp2 + 1, 7, "HTTP/1.") != 0 ||
        line.size() != sp2 + 9)
        return response(400, "Bad Request", "bad request\n");
    const std::string method = line.substr(0, sp1);
    const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (method != "GET")
        return response(405, "Method Not Allowed", "only GET\n", "text/plain; charset=utf-8", "Allow: GET\r\n");
    if (target.substr(0, target.find('?')) != "/metrics")
        return response(404, "Not Found", "not found: the metrics are at /metrics\n");
    try {
        return response(200, "OK", body_(), "text/plain; version=0.0.4; charset=utf-8");
    } catch (const std::exception& e) {
        return response(500, "Internal Server Error", std::string(e.what()) + "\n");
    }
}

} // namespace sockredir::app
