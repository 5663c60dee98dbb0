// Port lists to and from the bitmap that sock_ops tests once per new connection.
#include "loader/app/ports.hpp"

#include "loader/base/decimal.hpp"

namespace sockredir::app {

using base::parse_decimal;

namespace {

std::optional<uint16_t> parse_port(std::string_view text)
{
    const auto v = parse_decimal(text, 5);
    if (!v || *v == 0 || *v > 65535)
        return std::nullopt;
    return static_cast<uint16_t>(*v);
}

bool bit(const sockredir_config& c, uint32_t port)
{
    return ((c.ports[port / 64] >> (port % 64)) & 1U) != 0;
}

} // namespace

std::optional<PortRanges> parse_ports(std::string_view text)
{
    PortRanges out;
    if (text.empty())
        return std::nullopt;
    size_t start = 0;
    for (;;) {
        const size_t comma = text.find(',', start);
        const std::string_view item = text.substr(start, comma == std::string_view::npos ? comma : comma - start);
        const size_t dash = item.find('-');
        const auto lo = parse_port(item.substr(0, dash));
        const auto hi = dash == std::string_view::npos ? lo : parse_port(item.substr(dash + 1));
        if (!lo || !hi || *lo > *hi)
            return std::nullopt;
        out.emplace_back(*lo, *hi);
        if (comma == std::string_view::npos)
            return out;
        start = comma + 1;
    }
}

void apply_ports(const PortRanges& ports, sockredir_config& config)
{
    if (ports.empty())
        return;
    config.flags |= SOCKREDIR_F_PORTS;
    for (const auto& [lo, hi] : ports)
        for (uint32_t p = lo; p <= hi; ++p)
            config.ports[p / 64] |= uint64_t{1} << (p % 64);
}

void replace_ports(const PortRanges& ports, sockredir_config& config)
{
    config.flags &= ~static_cast<uint32_t>(SOCKREDIR_F_PORTS);
    for (auto& word : config.ports)
        word = 0;
    apply_ports(ports, config);
}

std::string format_ports(const sockredir_config& config)
{
    if ((config.flags & SOCKREDIR_F_PORTS) == 0)
        return "all";
    std::string out;
    for (uint32_t p = 0; p < 65536;) {
        if (!bit(config, p)) {
            ++p;
            continue;
        }
        uint32_t end = p;
        while (end + 1 < 65536 && bit(config, end + 1))
            ++end;
        if (!out.empty())
            out += ',';
        out += std::to_string(p);
        if (end != p)
            out += "-" + std::to_string(end);
        p = end + 1;
    }
    return out.empty() ? "none" : out;
}

} // namespace sockredir::app
