// Unit tests of loader/base/decimal: the one strict decimal parser.
#include <doctest/doctest.h>

#include "loader/base/decimal.hpp"

using sockredir::base::parse_decimal;

TEST_CASE("parse_decimal takes 1 to max_digits digits that fit in 32 bits, nothing else")
{
    CHECK(parse_decimal("0") == 0U);
    CHECK(parse_decimal("4294967295") == 4294967295U);
    CHECK_FALSE(parse_decimal("4294967296"));
    CHECK_FALSE(parse_decimal("12345678901")); // 11 digits
    CHECK(parse_decimal("65535", 5) == 65535U);
    CHECK_FALSE(parse_decimal("065535", 5)); // six digits, even with a leading zero
    for (const char* bad : {"", "-1", "+1", " 1", "1 ", "1.0", "0x10", "١"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_decimal(bad));
    }
}
