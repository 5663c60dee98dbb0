// The port selection of attach --ports: parsing "6379,8000-8100", the bitmap in the config map, and back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bpf/sockredir_shared.h"

namespace sockredir::app {

// Inclusive ranges of TCP ports, 1 to 65535. Empty: every port (no selection).
using PortRanges = std::vector<std::pair<uint16_t, uint16_t>>;

// Parses a comma-separated list of ports and ranges ("80,443,8000-8100").
// nullopt on any malformed item, a port outside 1..65535 or a range whose start exceeds its end.
std::optional<PortRanges> parse_ports(std::string_view text);

// Sets the SOCKREDIR_F_PORTS flag and the bitmap of config for a non-empty
// selection; leaves config as it is for an empty one.
void apply_ports(const PortRanges& ports, sockredir_config& config);

// Replaces the selection of config (flag and bitmap) by ports; empty: every port. Other flags are kept.
void replace_ports(const PortRanges& ports, sockredir_config& config);

// The selection held by a config as "all" or "80,443,8000-8100".
std::string format_ports(const sockredir_config& config);

} // namespace sockredir::app
