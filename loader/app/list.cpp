// list: the flows map says what each direction did; the sockhash which sockets are in the map; HostSockets who they
// are.
#include "loader/app/list.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "bpf/sockredir_shared.h"
#include "loader/app/pins.hpp"
#include "loader/app/status.hpp"
#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;

namespace {

struct KeyLess {
    bool operator()(const sockredir_key& a, const sockredir_key& b) const { return std::memcmp(&a, &b, sizeof a) < 0; }
};

sockredir_key reversed(const sockredir_key& k)
{
    sockredir_key r = k;
    r.local_port = k.remote_port;
    r.remote_port = k.local_port;
    std::memcpy(r.local_ip, k.remote_ip, sizeof r.local_ip);
    std::memcpy(r.remote_ip, k.local_ip, sizeof r.remote_ip);
    return r;
}

// What closed a direction to redirection (flow.reason), as list and the metrics name it.
std::string reason_name(uint32_t reason)
{
    switch (reason) {
    case SOCKREDIR_DEMOTED:
        return "demoted";
    case SOCKREDIR_READER_FLAGS:
        return "reader_oob_or_trunc";
    default:
        return reason < SOCKREDIR_COUNTER_MAX ? counter_name(static_cast<int>(reason)) : "unknown";
    }
}

// The path of the direction whose receiver has flow `into` (null: not in the map), sent by a socket whose own flow
// exists or not.
Direction direction_of(const sockredir_flow* into, bool sender_in_map, bool draining)
{
    Direction d;
    if (into != nullptr) {
        d.bytes = into->redirected_bytes;
        d.messages = into->redirected_msgs;
        d.unread = into->redirected_bytes > into->read_bytes ? into->redirected_bytes - into->read_bytes : 0;
    }
    if (into == nullptr || !sender_in_map)
        d.reason = "not_in_map";
    else if (into->never)
        d.reason = reason_name(into->reason);
    else if (draining)
        d.reason = "draining";
    else if (into->redirected_msgs > 0)
        d.redirected = true;
    else if (!into->reader_ok)
        d.reason = "unproven_reader";
    else
        d.reason = "nothing_sent";
    return d;
}

std::string netns_label(const Connection& c)
{
    if (!c.netns.name.empty())
        return c.netns.name;
    if (c.netns.inode != 0)
        return "net:[" + std::to_string(c.netns.inode) + "]";
    return "cookie:" + std::to_string(c.netns_cookie);
}

std::string path_label(const Direction& d)
{
    return d.redirected ? "redirected" : "tcp:" + d.reason;
}

// A command as a table cell: no space or control character of a process' own choosing can shift the columns or
// start a row of its own.
std::string cell(std::string text)
{
    for (char& c : text)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
            c = '?';
    return text;
}

std::string processes_label(const std::vector<Process>& ps)
{
    if (ps.empty())
        return "-";
    std::string out;
    for (const auto& p : ps)
        out += (out.empty() ? "" : ",") + cell(p.command) + "[" + std::to_string(p.pid) + "]";
    return out;
}

std::string endpoint_label(const std::string& family, const Endpoint& e)
{
    return family == "ipv6" ? "[" + e.address + "]:" + std::to_string(e.port)
                            : e.address + ":" + std::to_string(e.port);
}

std::string direction_json(const Direction& d)
{
    std::string out = "{\"path\":";
    out += d.redirected ? "\"redirected\",\"reason\":null" : "\"tcp\",\"reason\":" + json_string(d.reason);
    out += ",\"bytes\":" + std::to_string(d.bytes) + ",\"messages\":" + std::to_string(d.messages) +
           ",\"unread_bytes\":" + std::to_string(d.unread) + "}";
    return out;
}

std::string endpoint_json(const Endpoint& e)
{
    std::string out = "{\"address\":" + json_string(e.address) + ",\"port\":" + std::to_string(e.port) +
                      ",\"in_map\":" + (e.in_map ? "true" : "false") +
                      ",\"socket_cookie\":" + std::to_string(e.cookie) + ",\"processes\":[";
    for (size_t i = 0; i < e.processes.size(); ++i)
        out += (i ? "," : "") + std::string("{\"pid\":") + std::to_string(e.processes[i].pid) +
               ",\"command\":" + json_string(e.processes[i].command) + "}";
    return out + "]}";
}

} // namespace

Listing list_connections(const std::string& pin_dir, uint16_t port, bool owners)
{
    const PinDir p(pin_dir);
    Listing l;
    l.pin_dir = p.path();
    const auto found = read_attachment(p.path());
    if (!found.link)
        throw Error("not attached (no pins in " + p.path() + ")");

    const Fd flows_map = sys::obj_get(p / SOCKREDIR_MAP_FLOWS);
    const Fd socks = sys::obj_get(p / SOCKREDIR_MAP_SOCKS);
    const uint32_t max_entries = sys::map_info(flows_map.get()).max_entries;

    // Every flow once. A key deleted while the walk stands on it would make the kernel start over from the first:
    // the walk steps on from the last key it saw that still exists instead, and the set keeps each key once. It
    // ends after four times the map's size in any case, and then says the listing is not complete.
    std::map<sockredir_key, sockredir_flow, KeyLess> flows;
    std::vector<sockredir_key> seen;
    sockredir_key from{}, next{};
    bool start = true;
    uint64_t steps = 0;
    for (const uint64_t cap = 4ull * max_entries + 4; steps < cap; ++steps) {
        if (!sys::map_next_key(flows_map.get(), start ? nullptr : &from, &next))
            break;
        sockredir_flow flow{};
        if (sys::map_lookup(flows_map.get(), &next, &flow)) {
            if (flows.emplace(next, flow).second)
                seen.push_back(next);
            from = next;
            start = false;
            continue;
        }
        // Gone between the two calls: on from the newest key seen that is still there.
        start = true;
        for (auto it = seen.rbegin(); it != seen.rend(); ++it)
            if (sys::map_lookup(flows_map.get(), &*it, &flow)) {
                from = *it;
                start = false;
                break;
            }
    }
    l.complete = steps < 4ull * max_entries + 4;

    // Without /proc or the namespaces (a chroot, no CAP_SYS_ADMIN), the connections show without their owners.
    HostSockets host;
    if (owners) {
        try {
            host = HostSockets::read();
        } catch (const Error&) {
        }
    }
    const bool draining = found.draining;
    // Each connection under its client's key.
    std::set<sockredir_key, KeyLess> clients;
    for (const auto& [k, flow] : flows)
        clients.insert(flow.side == 1 ? reversed(k) : k);

    for (const auto& client_key : clients) {
        const sockredir_key server_key = reversed(client_key);
        if (port != 0 && client_key.local_port != port && server_key.local_port != port)
            continue;
        const auto c_flow = flows.find(client_key); // into the client: down
        const auto s_flow = flows.find(server_key); // into the server: up
        const bool c_ours = c_flow != flows.end(), s_ours = s_flow != flows.end();

        Connection c;
        c.netns_cookie = client_key.netns_cookie;
        if (const auto ns = host.netns(c.netns_cookie))
            c.netns = *ns;
        c.netns.cookie = c.netns_cookie;
        const int family = client_key.family == SOCKREDIR_AF_INET6 ? AF_INET6 : AF_INET;
        c.family = family == AF_INET6 ? "ipv6" : "ipv4";
        c.up = direction_of(s_ours ? &s_flow->second : nullptr, c_ours, draining);
        c.down = direction_of(c_ours ? &c_flow->second : nullptr, s_ours, draining);

        const auto fill = [&](Endpoint& e, const sockredir_key& k) {
            uint8_t local[16] = {}, remote[16] = {};
            std::memcpy(local, k.local_ip, family == AF_INET ? 4 : 16);
            std::memcpy(remote, k.remote_ip, family == AF_INET ? 4 : 16);
            e.address = format_address(family, local);
            std::memcpy(e.raw.data(), local, 16);
            e.port = k.local_port;
            uint64_t cookie = 0;
            e.in_map = sys::map_lookup(socks.get(), &k, &cookie);
            auto s = e.in_map ? host.find(k.netns_cookie, cookie) : std::nullopt;
            if (!s)
                s = host.find(k.netns_cookie, family, local, k.local_port, remote, k.remote_port);
            e.cookie = e.in_map ? cookie : s ? s->cookie : 0;
            if (s)
                e.processes = host.owners(s->inode);
        };
        fill(c.client, client_key);
        fill(c.server, server_key);
        l.connections.push_back(std::move(c));
    }
    const auto order = [](const Connection& c) {
        return std::make_tuple(c.netns.inode, c.netns_cookie, c.server.port, c.server.raw, c.client.port, c.client.raw);
    };
    std::sort(l.connections.begin(), l.connections.end(),
              [&](const Connection& a, const Connection& b) { return order(a) < order(b); });
    return l;
}

std::string format_list_text(const Listing& l)
{
    std::vector<std::vector<std::string>> rows = {{"NETNS", "CLIENT", "SERVER", "UP", "BYTES", "MSGS", "UNREAD", "DOWN",
                                                   "BYTES", "MSGS", "UNREAD", "CLIENT-PROCESS", "SERVER-PROCESS"}};
    for (const auto& c : l.connections)
        rows.push_back({netns_label(c), endpoint_label(c.family, c.client), endpoint_label(c.family, c.server),
                        path_label(c.up), std::to_string(c.up.bytes), std::to_string(c.up.messages),
                        std::to_string(c.up.unread), path_label(c.down), std::to_string(c.down.bytes),
                        std::to_string(c.down.messages), std::to_string(c.down.unread),
                        processes_label(c.client.processes), processes_label(c.server.processes)});
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size(); ++i)
            width[i] = std::max(width[i], r[i].size());
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); ++i) {
            std::string cell = r[i];
            if (i + 1 < r.size())
                cell.resize(width[i], ' ');
            line += (i ? "  " : "") + cell;
        }
        out += line + "\n";
    }
    return out;
}

std::string format_list_json(const Listing& l)
{
    std::string out = "{\"pin_dir\":" + json_string(l.pin_dir) + ",\"complete\":" + (l.complete ? "true" : "false") +
                      ",\"connections\":[";
    for (size_t i = 0; i < l.connections.size(); ++i) {
        const auto& c = l.connections[i];
        out += i ? "," : "";
        out += "{\"netns\":{\"cookie\":" + std::to_string(c.netns_cookie) +
               ",\"inode\":" + std::to_string(c.netns.inode) + ",\"name\":" + json_string(c.netns.name) + "}";
        out += ",\"family\":" + json_string(c.family);
        out += ",\"client\":" + endpoint_json(c.client) + ",\"server\":" + endpoint_json(c.server);
        out += ",\"up\":" + direction_json(c.up) + ",\"down\":" + direction_json(c.down) + "}";
    }
    return out + "]}\n";
}

} // namespace sockredir::app
