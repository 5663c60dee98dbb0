// Error formatting: the errno's text is appended to the message once, here.
#include "loader/base/error.hpp"

#include <cstring>

namespace sockredir::base {

namespace {
std::string with_errno(const std::string& message, int err)
{
    if (err == 0)
        return message;
    return message + ": " + std::strerror(err);
}
} // namespace

Error::Error(const std::string& message, int err) : std::runtime_error(with_errno(message, err)), code_(err) {}

Error::Error(std::string call, const std::string& message, int err)
    : std::runtime_error(with_errno(message.empty() ? call : call + " " + message, err)), call_(std::move(call)),
      code_(err)
{
}

Error::Error(const std::string& what, std::string call, int err, std::string log)
    : std::runtime_error(what), call_(std::move(call)), code_(err), log_(std::move(log))
{
}

Error Error::rephrased(const std::string& message, std::string log) const
{
    return Error(with_errno(message, code_), call_, code_, std::move(log));
}

} // namespace sockredir::base
