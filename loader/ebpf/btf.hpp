// A minimal BTF blob built by hand: the type information the kernel demands before it creates socket storage.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sockredir::ebpf {

// Type id of "int" (32-bit, signed) in minimal_btf().
inline constexpr uint32_t kBtfIntTypeId = 1;

// A BTF blob with one type: [1] INT 'int' size=4 bits=32 SIGNED. It is what
// BPF_MAP_TYPE_SK_STORAGE needs for its key and its 4-byte value.
std::vector<std::byte> minimal_btf();

} // namespace sockredir::ebpf
