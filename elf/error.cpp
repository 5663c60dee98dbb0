// Error formatting: the errno's text is appended to the message once, here.
#include "error.hpp"

#include <cstring>

namespace sockredir {

namespace {
std::string with_errno(const std::string& message, int err)
{
    if (err == 0)
        return message;
    return message + ": " + std::strerror(err);
}
} // namespace

Error::Error(const std::string& message, int err) : std::runtime_error(with_errno(message, err)), code_(err) {}

} // namespace sockredir
