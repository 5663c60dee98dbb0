// read(2) loop into memory; files here are small (/proc, /sys, a BPF object).
#include "loader/base/file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"

namespace sockredir::base {

std::vector<std::byte> read_file_bytes(const std::string& path)
{
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        throw Error("cannot read " + path, errno);
    std::vector<std::byte> out;
    std::byte buf[16384];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw Error("cannot read " + path, errno);
        }
        if (n == 0)
            return out;
        out.insert(out.end(), buf, buf + n);
    }
}

std::string read_file_text(const std::string& path)
{
    const auto bytes = read_file_bytes(path);
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

} // namespace sockredir::base
