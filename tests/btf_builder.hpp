// Test-only builders of raw BTF and .BTF.ext blobs, type by type and word by word, so that a test can break any field.
#pragma once

#include <linux/btf.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace sockredir::test {

using Bytes = std::vector<std::byte>;

// A type as the words the file holds: the three of struct btf_type, then its kind's tail.
using BtfWords = std::vector<uint32_t>;

// BTF_INFO_ENC of <linux/btf.h>'s users (the kernel's selftests): kind, kflag, vlen.
constexpr uint32_t btf_info(uint32_t kind, bool kflag, uint32_t vlen)
{
    return (kflag ? 1u << 31 : 0u) | kind << 24 | (vlen & 0xffff);
}

// Builds a BTF blob like clang does: header, types (ids from 1 in the order added), strings. Each add_* returns the
// id of the type it added. Names are added to the string section on the way (each distinct string once).
class BtfBuilder {
public:
    BtfBuilder();

    uint32_t add_string(std::string_view s);

    // Any words at all: the next type id, however broken.
    uint32_t add_raw(BtfWords words);

    uint32_t add_int(std::string_view name, uint32_t size, uint32_t encoding, uint32_t bits, uint32_t offset = 0);
    uint32_t add_ptr(uint32_t type);
    uint32_t add_array(uint32_t elem, uint32_t index, uint32_t nelems);
    struct Member {
        std::string name;
        uint32_t type = 0;
        uint32_t offset = 0; // bits; with kflag, bitfield size << 24 | bits
    };
    uint32_t add_struct(std::string_view name, uint32_t size, const std::vector<Member>& members, bool kflag = false);
    uint32_t add_union(std::string_view name, uint32_t size, const std::vector<Member>& members, bool kflag = false);
    struct Value {
        std::string name;
        int64_t value = 0;
    };
    uint32_t add_enum(std::string_view name, uint32_t size, const std::vector<Value>& values, bool is_signed = false);
    uint32_t add_enum64(std::string_view name, uint32_t size, const std::vector<Value>& values, bool is_signed = false);
    uint32_t add_fwd(std::string_view name, bool is_union = false);
    uint32_t add_typedef(std::string_view name, uint32_t type);
    uint32_t add_volatile(uint32_t type);
    uint32_t add_const(uint32_t type);
    uint32_t add_restrict(uint32_t type);
    uint32_t add_func(std::string_view name, uint32_t proto, uint32_t linkage = BTF_FUNC_GLOBAL);
    struct Param {
        std::string name;
        uint32_t type = 0;
    };
    uint32_t add_func_proto(uint32_t ret, const std::vector<Param>& params);
    uint32_t add_var(std::string_view name, uint32_t type, uint32_t linkage = BTF_VAR_GLOBAL_ALLOCATED);
    struct SecVar {
        uint32_t type = 0;
        uint32_t offset = 0;
        uint32_t size = 0;
    };
    uint32_t add_datasec(std::string_view name, uint32_t size, const std::vector<SecVar>& vars);
    uint32_t add_float(std::string_view name, uint32_t size);
    uint32_t add_decl_tag(std::string_view value, uint32_t type, int32_t component_idx = -1, bool kflag = false);
    uint32_t add_type_tag(std::string_view value, uint32_t type, bool kflag = false);

    // The words of type `id`, for a test to break them before build().
    BtfWords& words(uint32_t id) { return types_.at(id - 1); }
    // The string section, raw ("\0" and each added string with its NUL).
    std::string strings;

    // The header build() writes: hdr_len 24, types at 0, strings right after them.
    btf_header header() const;
    Bytes types_bytes() const;
    Bytes build() const;
    // Writes the header as `patch` leaves it, the same types and strings after it.
    Bytes build(const std::function<void(btf_header&)>& patch) const;

private:
    std::vector<BtfWords> types_;
};

// Builds a .BTF.ext blob: header (hdr_len 32, with the CO-RE part; 24 without), then func_info, line_info and
// core_relo subsections, each a record size and its section entries.
class BtfExtBuilder {
public:
    struct Entry {
        uint32_t sec_name_off = 0;
        std::vector<BtfWords> records; // each padded with zeros to the record size
    };
    struct Subsection {
        uint32_t record_size = 0;
        std::vector<Entry> entries;
    };
    Subsection func_info{8, {}};
    Subsection line_info{16, {}};
    Subsection core_relo{16, {}};
    bool with_core_relo = true;

    // Adds a record to the entry of `sec_name_off` (the last one if it is the same section, else a new entry).
    void add_func_info(uint32_t sec_name_off, uint32_t insn_off, uint32_t type_id);
    void add_line_info(uint32_t sec_name_off, uint32_t insn_off, uint32_t file_name_off, uint32_t line_off,
                       uint32_t line, uint32_t col);
    void add_core_relo(uint32_t sec_name_off, uint32_t insn_off, uint32_t type_id, uint32_t access_str_off,
                       uint32_t kind);

    // What build() writes; the offsets count from the end of the header.
    struct Header {
        uint16_t magic = BTF_MAGIC;
        uint8_t version = BTF_VERSION;
        uint8_t flags = 0;
        uint32_t hdr_len = 0;
        uint32_t func_info_off = 0, func_info_len = 0;
        uint32_t line_info_off = 0, line_info_len = 0;
        uint32_t core_relo_off = 0, core_relo_len = 0;
    };
    Header header() const;
    Bytes build() const;
    Bytes build(const std::function<void(Header&)>& patch) const;
};

} // namespace sockredir::test
