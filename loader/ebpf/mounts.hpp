// Finding and, where missing, mounting the two filesystems sockredir needs: cgroup2 and bpffs.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sockredir::ebpf {

inline constexpr const char* kDefaultBpffs = "/sys/fs/bpf";

// The mount point of the first cgroup2 filesystem mounted at its root in a
// /proc/self/mountinfo text; octal escapes (\040) are decoded.
std::optional<std::string> find_cgroup2_mount(std::string_view mountinfo);

// The cgroup2 root of this system: from /proc/self/mountinfo, or mounted at
// /sys/fs/cgroup (or /sys/fs/cgroup/unified when /sys/fs/cgroup is taken).
std::string cgroup2_root(bool mount_if_missing);

// Throws unless `dir` is a directory on a cgroup2 filesystem.
void check_cgroup2_dir(const std::string& dir);

// Makes sure the parent of `pin_dir` is on bpffs, mounting bpffs at
// /sys/fs/bpf when that is the parent and nothing is mounted there.
void ensure_bpffs(const std::string& pin_dir, bool mount_if_missing);

bool is_bpffs(const std::string& path);

} // namespace sockredir::ebpf
