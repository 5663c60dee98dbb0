// Builds the minimal BTF blob from the kernel's UAPI layouts in <linux/btf.h>.
#include "loader/ebpf/btf.hpp"

#include <linux/btf.h>

#include <cstring>

namespace sockredir::ebpf {

std::vector<std::byte> minimal_btf()
{
    static constexpr char kStrings[] = "\0int"; // offset 0: "", offset 1: "int"

    btf_type type{};
    type.name_off = 1;
    type.info = BTF_KIND_INT << 24; // kind in bits 24-28, vlen 0
    type.size = 4;
    // The u32 after an INT: encoding in bits 24-27, offset in 16-23, bit count in 0-7.
    const uint32_t int_data = (BTF_INT_SIGNED << 24) | 32;

    btf_header h{};
    h.magic = BTF_MAGIC;
    h.version = BTF_VERSION;
    h.hdr_len = sizeof h;
    h.type_off = 0;
    h.type_len = sizeof type + sizeof int_data;
    h.str_off = h.type_len;
    h.str_len = sizeof kStrings;

    std::vector<std::byte> out(sizeof h + h.type_len + h.str_len);
    std::byte* p = out.data();
    std::memcpy(p, &h, sizeof h);
    std::memcpy(p + sizeof h, &type, sizeof type);
    std::memcpy(p + sizeof h + sizeof type, &int_data, sizeof int_data);
    std::memcpy(p + sizeof h + h.type_len, kStrings, sizeof kStrings);
    return out;
}

} // namespace sockredir::ebpf
