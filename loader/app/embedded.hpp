// The BPF object built with this binary, embedded at build time (tools/embed.py).
#pragma once

#include <cstddef>
#include <span>

namespace sockredir::app {
std::span<const std::byte> embedded_object();
}
