// cgroup2 and bpffs discovery from /proc/self/mountinfo and statfs(2), and mount(2) where they are missing.
#include "loader/ebpf/mounts.hpp"

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "loader/base/error.hpp"
#include "loader/base/file.hpp"

namespace sockredir::ebpf {

using base::Error;
using base::read_file_text;

namespace {

std::string unescape(std::string_view s)
{
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && s.size() - i >= 4 && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
            s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
            out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
            i += 3;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

std::vector<std::string_view> split(std::string_view line)
{
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ')
            ++i;
        size_t j = i;
        while (j < line.size() && line[j] != ' ')
            ++j;
        if (j > i)
            out.push_back(line.substr(i, j - i));
        i = j;
    }
    return out;
}

bool has_magic(const std::string& path, long magic)
{
    struct statfs st {};
    if (::statfs(path.c_str(), &st) != 0)
        return false;
    return static_cast<long>(st.f_type) == magic;
}

bool is_directory(const std::string& path)
{
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_mount_point(const std::string& path)
{
    struct stat st {
    }, parent{};
    if (::stat(path.c_str(), &st) != 0 || ::stat((path + "/..").c_str(), &parent) != 0)
        return false;
    return st.st_dev != parent.st_dev;
}

void mkdir_p(const std::string& path, mode_t mode)
{
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i != path.size() && path[i] != '/')
            continue;
        const std::string partial = path.substr(0, i);
        if (::mkdir(partial.c_str(), mode) != 0 && errno != EEXIST)
            throw Error("creating " + partial, errno);
    }
}

} // namespace

std::optional<std::string> find_cgroup2_mount(std::string_view mountinfo)
{
    size_t start = 0;
    while (start < mountinfo.size()) {
        size_t end = mountinfo.find('\n', start);
        if (end == std::string_view::npos)
            end = mountinfo.size();
        const auto fields = split(mountinfo.substr(start, end - start));
        start = end + 1;
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        size_t dash = 0;
        for (size_t i = 6; i < fields.size(); ++i)
            if (fields[i] == "-") {
                dash = i;
                break;
            }
        if (dash == 0 || dash + 1 >= fields.size())
            continue;
        if (fields[dash + 1] == "cgroup2" && fields[3] == "/")
            return unescape(fields[4]);
    }
    return std::nullopt;
}

std::string cgroup2_root(bool mount_if_missing)
{
    if (auto found = find_cgroup2_mount(read_file_text("/proc/self/mountinfo")))
        return *found;
    if (!mount_if_missing)
        throw Error("no cgroup2 filesystem is mounted (see /proc/self/mountinfo)");
    // An initramfs or a minimal system: mount cgroup2 where systemd would.
    std::string target = "/sys/fs/cgroup";
    if (is_mount_point(target))
        target += "/unified";
    mkdir_p(target, 0755);
    if (::mount("cgroup2", target.c_str(), "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
        throw Error("mounting cgroup2 at " + target, errno);
    return target;
}

void check_cgroup2_dir(const std::string& dir)
{
    if (!is_directory(dir))
        throw Error("cgroup " + dir + ": no such directory", ENOENT);
    if (!has_magic(dir, CGROUP2_SUPER_MAGIC))
        throw Error("cgroup " + dir + ": not a cgroup2 directory");
}

bool is_bpffs(const std::string& path)
{
    return has_magic(path, BPF_FS_MAGIC);
}

void ensure_bpffs(const std::string& pin_dir, bool mount_if_missing)
{
    const auto slash = pin_dir.find_last_of('/');
    const std::string parent = slash == 0 ? "/" : pin_dir.substr(0, slash);
    if (parent.empty() || slash == std::string::npos)
        throw Error("pin dir " + pin_dir + ": must be an absolute path");
    if (is_bpffs(parent))
        return;
    if (mount_if_missing && parent == kDefaultBpffs) {
        mkdir_p(parent, 0755);
        if (::mount("bpf", parent.c_str(), "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") != 0)
            throw Error("mounting bpffs at " + parent, errno);
        return;
    }
    throw Error("pin dir " + pin_dir + ": " + parent + " is not a bpf filesystem (mount -t bpf bpf " + parent + ")");
}

} // namespace sockredir::ebpf
