// Pins on bpffs (cilium/ebpf pin/): whether one exists, a directory of pins taken down, and the lock that
// serializes the writers of a directory.
#pragma once

#include <string>
#include <vector>

#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"

namespace sockredir::ebpf {

using base::Error;
using base::Fd;

// Whether a pin (or a directory of pins) exists. A pin that cannot be looked at (not root: pin dirs are 0700) is an
// error, not "absent".
bool pin_exists(const std::string& path);

// The names in a directory, without "." and ".."; empty when the directory does not exist.
std::vector<std::string> list_dir(const std::string& dir);

// Removes every pin in `dir` and the directory itself; nothing when it does not exist.
void unpin_dir(const std::string& dir);

// flock(LOCK_EX) on a directory, held for the object's lifetime.
class DirLock {
public:
    explicit DirLock(const std::string& dir);

private:
    Fd fd_;
};

} // namespace sockredir::ebpf
