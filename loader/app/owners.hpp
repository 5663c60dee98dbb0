// Who holds a TCP socket, as ss -p finds it: the network namespaces of the host by their cookies, the kernel's socket
// table of each (sock_diag), and the processes whose descriptors point at a socket's inode (/proc/PID/fd).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace sockredir::app {

struct Process {
    int pid = 0;
    std::string command; // /proc/PID/comm
    bool operator==(const Process&) const = default;
};

// One network namespace, as lsns and ip netns name it.
struct Netns {
    uint64_t cookie = 0; // SO_NETNS_COOKIE: what bpf_get_netns_cookie() returns for it
    uint64_t inode = 0;  // net:[INODE]
    std::string name;    // its name under /run/netns (ip netns), or empty
};

// A TCP socket of one namespace: its addresses as the kernel's socket table has them. Addresses are 16 bytes in
// network order; an IPv4 address (or an IPv4-mapped IPv6 one) takes the first 4 and family is AF_INET.
struct TcpSocket {
    int family = 0;
    uint8_t local[16] = {};
    uint8_t remote[16] = {};
    uint16_t local_port = 0; // host order
    uint16_t remote_port = 0;
    uint64_t cookie = 0; // the socket cookie, as a sockhash holds it
    uint64_t inode = 0;  // 0 for a socket no file refers to (closed by its process, still in the kernel)
    int state = 0;       // TCP_ESTABLISHED, ...
};

// A snapshot of the host's namespaces, sockets and their owners; read once, asked many times.
class HostSockets {
public:
    // Walks /proc and /run/netns for namespaces. Needs CAP_SYS_ADMIN to enter them: without it, only this process'
    // namespace is read. Never throws for a namespace or process that goes away while it looks.
    static HostSockets read();

    // The namespace with this cookie, if one of the host's processes (or /run/netns) has it.
    std::optional<Netns> netns(uint64_t cookie) const;
    // The socket with this cookie in the namespace with that cookie; else the socket with these addresses there.
    std::optional<TcpSocket> find(uint64_t netns_cookie, uint64_t socket_cookie) const;
    std::optional<TcpSocket> find(uint64_t netns_cookie, int family, const uint8_t local[16], uint16_t local_port,
                                  const uint8_t remote[16], uint16_t remote_port) const;
    // The processes with a descriptor on the socket with this inode, by pid.
    std::vector<Process> owners(uint64_t inode) const;

private:
    // A socket's place in one namespace: by its cookie, and by its addresses (family, ports, local, remote).
    using Tuple = std::tuple<int, uint16_t, uint16_t, std::array<uint8_t, 16>, std::array<uint8_t, 16>>;
    struct Table {
        std::map<uint64_t, TcpSocket> by_cookie;
        std::map<Tuple, TcpSocket> by_tuple; // one a file refers to first (not a TIME_WAIT socket's)
    };
    void add(uint64_t netns_cookie, const std::vector<TcpSocket>& sockets);

    std::map<uint64_t, Netns> netns_;                 // by cookie
    std::map<uint64_t, Table> sockets_;               // by netns cookie
    std::map<uint64_t, std::vector<Process>> owners_; // by socket inode
};

// The address as ip and ss print it (127.0.0.1, ::1).
std::string format_address(int family, const uint8_t address[16]);

} // namespace sockredir::app
