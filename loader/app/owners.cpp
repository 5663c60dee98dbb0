// HostSockets: namespaces by cookie (setns and SO_NETNS_COOKIE), sockets by sock_diag, owners by /proc/PID/fd.
#include "loader/app/owners.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/base/file.hpp"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71 // Linux 5.14
#endif

namespace sockredir::app {

using base::Error;
using base::Fd;

namespace {

constexpr uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// The pids of /proc, in order.
std::vector<int> pids()
{
    std::vector<int> out;
    DIR* d = ::opendir("/proc");
    if (d == nullptr)
        throw Error("reading /proc", errno);
    while (dirent* e = ::readdir(d))
        if (const auto pid = base::parse_decimal(e->d_name); pid && *pid > 0 && *pid <= 0x7fffffff)
            out.push_back(static_cast<int>(*pid));
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

std::string command_of(int pid)
{
    std::string comm;
    try {
        comm = base::read_file_text("/proc/" + std::to_string(pid) + "/comm");
    } catch (const Error&) {
        return {};
    }
    while (!comm.empty() && comm.back() == '\n')
        comm.pop_back();
    return comm;
}

// One netlink sock_diag dump of the TCP sockets of `family` in the namespace `diag` was opened in.
void dump_tcp(int diag, int family, std::vector<TcpSocket>& out)
{
    struct {
        nlmsghdr nlh;
        inet_diag_req_v2 req;
    } request{};
    request.nlh.nlmsg_len = sizeof request;
    request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.nlh.nlmsg_seq = 1;
    request.req.sdiag_family = static_cast<uint8_t>(family);
    request.req.sdiag_protocol = IPPROTO_TCP;
    request.req.idiag_states = ~0u;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(diag, &request, sizeof request, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
        throw Error("sock_diag request", errno);
    alignas(nlmsghdr) char buf[32768];
    for (;;) {
        const ssize_t n = ::recv(diag, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw Error("sock_diag dump", errno);
        }
        if (n == 0)
            return;
        auto len = static_cast<unsigned>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
                if (h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error != 0)
                    throw Error("sock_diag dump", -e->error);
                return;
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg)))
                continue;
            const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
            TcpSocket s;
            s.family = m->idiag_family;
            std::memcpy(s.local, m->id.idiag_src, 16);
            std::memcpy(s.remote, m->id.idiag_dst, 16);
            if (s.family == AF_INET6 && std::memcmp(s.local, kV4Mapped, 12) == 0 &&
                std::memcmp(s.remote, kV4Mapped, 12) == 0) {
                // Keyed as IPv4, as sockredir's programs key it.
                s.family = AF_INET;
                std::memmove(s.local, s.local + 12, 4);
                std::memmove(s.remote, s.remote + 12, 4);
                std::memset(s.local + 4, 0, 12);
                std::memset(s.remote + 4, 0, 12);
            } else if (s.family == AF_INET) {
                std::memset(s.local + 4, 0, 12);
                std::memset(s.remote + 4, 0, 12);
            }
            s.local_port = ntohs(m->id.idiag_sport);
            s.remote_port = ntohs(m->id.idiag_dport);
            s.cookie =
                static_cast<uint64_t>(m->id.idiag_cookie[0]) | (static_cast<uint64_t>(m->id.idiag_cookie[1]) << 32);
            s.inode = m->idiag_inode;
            s.state = m->idiag_state;
            out.push_back(s);
        }
    }
}

// The cookie of the namespace this process is in, and a sock_diag socket of it.
std::optional<uint64_t> current_netns_cookie()
{
    Fd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!probe)
        return std::nullopt;
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    if (::getsockopt(probe.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0)
        return std::nullopt;
    return cookie;
}

} // namespace

std::string format_address(int family, const uint8_t address[16])
{
    char text[INET6_ADDRSTRLEN] = {};
    if (::inet_ntop(family == AF_INET ? AF_INET : AF_INET6, address, text, sizeof text) == nullptr)
        return "?";
    return text;
}

HostSockets HostSockets::read()
{
    HostSockets h;
    Fd self(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!self)
        throw Error("opening /proc/self/ns/net", errno);

    // Every namespace once, by inode: those of /run/netns first (they have names), then those of the processes.
    std::vector<std::pair<std::string, std::string>> candidates; // path, name
    if (DIR* d = ::opendir("/run/netns")) {
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.')
                candidates.emplace_back(std::string("/run/netns/") + e->d_name, e->d_name);
        ::closedir(d);
    }
    const auto all = pids();
    candidates.emplace_back("/proc/self/ns/net", "");
    for (int pid : all)
        candidates.emplace_back("/proc/" + std::to_string(pid) + "/ns/net", "");

    // Entering a namespace is safe only where this process can come back: a process that may enter its own
    // namespace (CAP_SYS_ADMIN over it) can return from any other. Otherwise only its own is read, in place.
    std::set<uint64_t> seen;
    bool entered = false;
    if (::setns(self.get(), CLONE_NEWNET) != 0)
        candidates.clear();
    for (const auto& [path, name] : candidates) {
        Fd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        struct stat st {};
        if (!ns || ::fstat(ns.get(), &st) != 0 || !seen.insert(st.st_ino).second)
            continue;
        if (::setns(ns.get(), CLONE_NEWNET) != 0)
            continue; // gone, or no CAP_SYS_ADMIN: only this process' own namespace is read
        entered = true;
        const auto cookie = current_netns_cookie();
        Fd diag(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
        if (::setns(self.get(), CLONE_NEWNET) != 0)
            throw Error("returning to this process' network namespace", errno);
        if (!cookie || !diag)
            continue;
        h.netns_[*cookie] = Netns{*cookie, st.st_ino, name};
        std::vector<TcpSocket> sockets;
        try {
            dump_tcp(diag.get(), AF_INET, sockets);
            dump_tcp(diag.get(), AF_INET6, sockets);
        } catch (const Error&) {
            // A namespace whose socket table cannot be read: its connections show without owners.
        }
        h.add(*cookie, sockets);
    }
    if (!entered) {
        // No setns allowed: this process' namespace, read in place.
        struct stat st {};
        if (const auto cookie = current_netns_cookie(); cookie && ::fstat(self.get(), &st) == 0) {
            h.netns_[*cookie] = Netns{*cookie, st.st_ino, ""};
            Fd diag(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
            std::vector<TcpSocket> sockets;
            if (diag) {
                try {
                    dump_tcp(diag.get(), AF_INET, sockets);
                    dump_tcp(diag.get(), AF_INET6, sockets);
                } catch (const Error&) {
                }
            }
            h.add(*cookie, sockets);
        }
    }

    // The owners: every descriptor of every process that is a socket.
    for (int pid : all) {
        const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
        DIR* d = ::opendir(dir.c_str());
        if (d == nullptr)
            continue;
        std::string command;
        std::set<uint64_t> mine;
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.')
                continue;
            char link[64];
            const ssize_t n = ::readlinkat(::dirfd(d), e->d_name, link, sizeof link - 1);
            if (n <= 9)
                continue;
            link[n] = '\0';
            // "socket:[INODE]"
            if (std::strncmp(link, "socket:[", 8) != 0 || link[n - 1] != ']')
                continue;
            const auto inode = base::parse_decimal(std::string_view(link + 8, static_cast<size_t>(n - 9)));
            if (!inode || !mine.insert(*inode).second)
                continue;
            if (command.empty())
                command = command_of(pid);
            h.owners_[*inode].push_back(Process{pid, command});
        }
        ::closedir(d);
    }
    return h;
}

std::optional<Netns> HostSockets::netns(uint64_t cookie) const
{
    const auto it = netns_.find(cookie);
    if (it == netns_.end())
        return std::nullopt;
    return it->second;
}

void HostSockets::add(uint64_t netns_cookie, const std::vector<TcpSocket>& sockets)
{
    Table& t = sockets_[netns_cookie];
    for (const auto& s : sockets) {
        t.by_cookie.emplace(s.cookie, s);
        std::array<uint8_t, 16> local{}, remote{};
        std::memcpy(local.data(), s.local, 16);
        std::memcpy(remote.data(), s.remote, 16);
        auto [it, added] = t.by_tuple.emplace(Tuple{s.family, s.local_port, s.remote_port, local, remote}, s);
        if (!added && it->second.inode == 0 && s.inode != 0)
            it->second = s;
    }
}

std::optional<TcpSocket> HostSockets::find(uint64_t netns_cookie, uint64_t socket_cookie) const
{
    const auto t = sockets_.find(netns_cookie);
    if (t == sockets_.end() || socket_cookie == 0)
        return std::nullopt;
    const auto it = t->second.by_cookie.find(socket_cookie);
    if (it == t->second.by_cookie.end())
        return std::nullopt;
    return it->second;
}

std::optional<TcpSocket> HostSockets::find(uint64_t netns_cookie, int family, const uint8_t local[16],
                                           uint16_t local_port, const uint8_t remote[16], uint16_t remote_port) const
{
    const auto t = sockets_.find(netns_cookie);
    if (t == sockets_.end())
        return std::nullopt;
    std::array<uint8_t, 16> l{}, r{};
    std::memcpy(l.data(), local, 16);
    std::memcpy(r.data(), remote, 16);
    const auto it = t->second.by_tuple.find(Tuple{family, local_port, remote_port, l, r});
    if (it == t->second.by_tuple.end())
        return std::nullopt;
    return it->second;
}

std::vector<Process> HostSockets::owners(uint64_t inode) const
{
    const auto it = owners_.find(inode);
    if (inode == 0 || it == owners_.end())
        return {};
    return it->second;
}

} // namespace sockredir::app
