// The one error type of sockredir: a one-line message and, where a syscall failed, its errno.
#pragma once

#include <stdexcept>
#include <string>

namespace sockredir {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message, int err = 0);
    // The errno behind the failure, 0 when none.
    int code() const noexcept { return code_; }

private:
    int code_;
};

} // namespace sockredir
