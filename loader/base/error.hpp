// The one error type: a one-line message, the call that failed (a bpf(2) command or a system call) and its errno.
#pragma once

#include <stdexcept>
#include <string>

namespace sockredir::base {

class Error : public std::runtime_error {
public:
    // A failure of our own making (a malformed object, a bad option): no call, no errno.
    explicit Error(const std::string& message, int err = 0);
    // A failed call. what() is "CALL MESSAGE: strerror(err)"; `call` is kept apart so that callers decide by
    // (call, errno), never by the text.
    Error(std::string call, const std::string& message, int err);

    // The errno behind the failure, 0 when none.
    int code() const noexcept { return code_; }
    // The failing call ("BPF_PROG_LOAD", "mount"), empty when none.
    const std::string& call() const noexcept { return call_; }
    // The verifier's log of a rejected program, empty when there is none.
    const std::string& log() const noexcept { return log_; }

    // The same failure (call, errno) said in the caller's words, "MESSAGE: strerror(errno)", with a log attached
    // (the verifier's, for a rejected program).
    Error rephrased(const std::string& message, std::string log = {}) const;

private:
    Error(const std::string& what, std::string call, int err, std::string log);

    std::string call_;
    int code_ = 0;
    std::string log_;
};

} // namespace sockredir::base
