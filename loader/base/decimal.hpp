// One strict decimal parser for the command line, port lists and the kernel release: digits only, no sign, no
// spaces, at most `max_digits` of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sockredir::base {

// The value of `text` when it is 1 to max_digits (at most 10) decimal digits and fits in 32 bits; nothing otherwise.
inline std::optional<uint32_t> parse_decimal(std::string_view text, size_t max_digits = 10)
{
    if (text.empty() || text.size() > max_digits || max_digits > 10)
        return std::nullopt;
    uint64_t v = 0;
    for (char c : text) {
        if (c < '0' || c > '9')
            return std::nullopt;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (v > UINT32_MAX)
        return std::nullopt;
    return static_cast<uint32_t>(v);
}

} // namespace sockredir::base
