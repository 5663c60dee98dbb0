// What the operator can do about a failure: one hint per (failing call, errno), kept as one table.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "loader/base/error.hpp"

namespace sockredir::app {

// One row of the hint table: a failure with errno `code` of one of `calls` (the base::Error::call() of the
// failure; no calls: any call, and a failure that names none) gets `text` appended.
struct ErrorHint {
    int code;
    std::span<const std::string_view> calls;
    std::string_view text;
};

// The table, first match wins.
std::span<const ErrorHint> error_hints();

// The hint of the first row matching (call, code), nullptr when none does. check's verdict uses it for a refused
// probe, describe_error for any failure.
const char* hint_for(std::string_view call, int code);
const char* hint_for(const base::Error& e);

// The one line printed for a failure: the error itself, then " (hint)" when a row of the table matches
// (e.call(), e.code()). The text of the error is never looked at.
std::string describe_error(const base::Error& e);

} // namespace sockredir::app
