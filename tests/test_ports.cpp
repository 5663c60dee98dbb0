// Unit tests of loader/app/ports: parsing a selection, its bitmap in the config map, and back.
#include <doctest/doctest.h>

#include <cstdint>
#include <utility>

#include "bpf/sockredir_shared.h"
#include "loader/app/ports.hpp"

using namespace sockredir::app;

TEST_CASE("parse_ports takes ports and ranges 1-65535 and refuses anything else")
{
    const auto p = parse_ports("6379,8000-8100,443");
    REQUIRE(p.has_value());
    REQUIRE(p->size() == 3);
    CHECK((*p)[0] == std::pair<uint16_t, uint16_t>{6379, 6379});
    CHECK((*p)[1] == std::pair<uint16_t, uint16_t>{8000, 8100});
    CHECK((*p)[2] == std::pair<uint16_t, uint16_t>{443, 443});
    CHECK(parse_ports("1-65535")->size() == 1);
    for (const char* bad : {"", "0", "65536", "80,", ",80", "80-", "-80", "90-80", "8o", "80 ,81", "1-2-3", "all"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_ports(bad));
    }
}

TEST_CASE("a port selection round-trips through the config bitmap that sock_ops reads")
{
    sockredir_config cfg{};
    CHECK(format_ports(cfg) == "all");
    apply_ports({}, cfg);
    CHECK(cfg.flags == 0); // no selection: every port
    apply_ports(*parse_ports("6379,8000-8100,1,65535,63-64"), cfg);
    CHECK((cfg.flags & SOCKREDIR_F_PORTS) != 0);
    CHECK(format_ports(cfg) == "1,63-64,6379,8000-8100,65535");
    // The bit layout sock_ops tests: ports[p / 64] bit p % 64.
    CHECK(((cfg.ports[6379 / 64] >> (6379 % 64)) & 1) == 1);
    CHECK(((cfg.ports[6380 / 64] >> (6380 % 64)) & 1) == 0);
    CHECK(((cfg.ports[65535 / 64] >> 63) & 1) == 1);
    CHECK((cfg.ports[0] & 1) == 0); // port 0 is never selected
}

TEST_CASE("replace_ports swaps the whole selection and keeps the other flags")
{
    sockredir_config cfg{};
    cfg.flags = SOCKREDIR_F_DRAINING;
    apply_ports(*parse_ports("80,6379"), cfg);
    replace_ports(*parse_ports("443"), cfg);
    CHECK(format_ports(cfg) == "443"); // 80 and 6379 are gone, not added to
    CHECK((cfg.flags & SOCKREDIR_F_DRAINING) != 0);
    replace_ports({}, cfg);
    CHECK(format_ports(cfg) == "all");
    CHECK(cfg.flags == SOCKREDIR_F_DRAINING);
    for (const auto word : cfg.ports)
        CHECK(word == 0);
}
