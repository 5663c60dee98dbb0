// list: one row per connection sockredir took, like ss: its endpoints, namespace and owners, and for each direction
// its path (redirected, or TCP and why), what was redirected and what its reader has not read yet.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "loader/app/owners.hpp"

namespace sockredir::app {

// One direction of a connection: the flow into its receiving socket.
struct Direction {
    bool redirected = false; // its messages go straight to the peer; otherwise TCP carries them, for `reason`
    // Why TCP carries it: a SOCKREDIR_READER_* name ("reader_blocking"), "demoted", "draining", "not_in_map" (the
    // other end is not in the map), "unproven_reader" (not yet seen reading), "nothing_sent".
    std::string reason;
    uint64_t bytes = 0;    // redirected, all along
    uint64_t messages = 0; // redirected
    uint64_t unread = 0;   // redirected bytes the receiver has not read yet
};

struct Endpoint {
    std::string address;
    std::array<uint8_t, 16> raw{}; // the address in network order, for sorting
    uint16_t port = 0;
    bool in_map = false; // the socket is in the sockhash now
    uint64_t cookie = 0; // its socket cookie (0: not found)
    std::vector<Process> processes;
};

struct Connection {
    uint64_t netns_cookie = 0;
    Netns netns;        // inode 0: not found among the host's processes
    std::string family; // "ipv4", "ipv6"
    Endpoint client;
    Endpoint server;
    Direction up;   // client to server
    Direction down; // server to client
};

struct Listing {
    std::string pin_dir;
    bool complete = true;                // false: the flows map changed too fast to be walked whole
    std::vector<Connection> connections; // sorted by namespace, server, client
};

// The connections of the attachment at `pin_dir`, those with `port` at either end when it is not 0; with their
// namespaces' names and their processes when `owners` (a walk of /proc and of every namespace's sockets). Throws
// base::Error when nothing is attached there.
Listing list_connections(const std::string& pin_dir, uint16_t port = 0, bool owners = true);

std::string format_list_text(const Listing& l);
std::string format_list_json(const Listing& l);

} // namespace sockredir::app
