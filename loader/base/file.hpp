// Whole-file reads with read(2): iostreams would double the size of the static binary.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace sockredir::base {

// Throws sockredir::Error("cannot read PATH: <errno>") on failure.
std::vector<std::byte> read_file_bytes(const std::string& path);
std::string read_file_text(const std::string& path);

} // namespace sockredir::base
