// Pins: lstat for existence, readdir + unlink + rmdir to take a directory of them down, flock to serialize.
#include "loader/ebpf/pin.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace sockredir::ebpf {

bool pin_exists(const std::string& path)
{
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0)
        return true;
    if (errno == ENOENT || errno == ENOTDIR)
        return false;
    throw Error("lstat", "cannot read pins at " + path, errno);
}

std::vector<std::string> list_dir(const std::string& dir)
{
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
        if (errno == ENOENT)
            return names;
        throw Error("opendir", dir, errno);
    }
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..")
            names.push_back(std::move(name));
    }
    ::closedir(d);
    return names;
}

void unpin_dir(const std::string& dir)
{
    for (const auto& name : list_dir(dir))
        if (::unlink((dir + "/" + name).c_str()) != 0 && errno != ENOENT)
            throw Error("unlink", "removing pin " + dir + "/" + name, errno);
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT)
        throw Error("rmdir", "removing " + dir, errno);
}

DirLock::DirLock(const std::string& dir)
{
    fd_ = Fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd_)
        throw Error("open", dir, errno);
    while (::flock(fd_.get(), LOCK_EX) != 0)
        if (errno != EINTR)
            throw Error("flock", "locking " + dir, errno);
}

} // namespace sockredir::ebpf
