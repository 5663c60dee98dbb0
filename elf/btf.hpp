// BTF, the BPF Type Format of a .BTF section: parsed and checked, looked up, fixed up and sanitized for a kernel,
// encoded back; and the .BTF.ext records (func_info, line_info, CO-RE relocations). Pure parsing, no syscalls.
#pragma once

#include <linux/bpf.h>
#include <linux/btf.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "elf/reader.hpp"
#include "loader/base/error.hpp"

namespace sockredir::elf {

using base::Error;

// "INT", "STRUCT", ... as bpftool prints them; "UNKN" for void (kind 0) and "kind N" past BTF_KIND_MAX.
std::string btf_kind_name(uint32_t kind);

// --- the model ---------------------------------------------------------------------------------------------------
// Every field keeps the raw value of the file, so that encode() writes the same bytes back.

struct BtfMember {
    uint32_t name_off = 0;
    uint32_t type = 0;
    // As in the file: the member's bit offset, or, when the parent's kflag is set, bitfield size << 24 | bit offset.
    // BtfType::member_bit_offset() and member_bitfield_size() decode it.
    uint32_t offset = 0;
    bool operator==(const BtfMember&) const = default;
};

struct BtfEnumValue {
    uint32_t name_off = 0;
    // The raw bits: an ENUM's u32 val zero-extended, an ENUM64's val_lo32 | val_hi32 << 32. Signed when the type's
    // kflag is set.
    uint64_t value = 0;
    bool operator==(const BtfEnumValue&) const = default;
};

struct BtfParam {
    uint32_t name_off = 0;
    uint32_t type = 0; // 0 in the last parameter: variadic
    bool operator==(const BtfParam&) const = default;
};

struct BtfArray {
    uint32_t type = 0;
    uint32_t index_type = 0;
    uint32_t nelems = 0;
    bool operator==(const BtfArray&) const = default;
};

struct BtfVarSecinfo {
    uint32_t type = 0; // a VAR (or, in .ksyms, a FUNC)
    uint32_t offset = 0;
    uint32_t size = 0;
    bool operator==(const BtfVarSecinfo&) const = default;
};

struct BtfType {
    uint32_t kind = BTF_KIND_UNKN; // BTF_KIND_*
    uint32_t name_off = 0;
    // The info word's vlen: the number of members / values / params / vars, or a FUNC's linkage (BTF_FUNC_*).
    // encode() refuses a vlen that disagrees with the vector it counts.
    uint16_t vlen = 0;
    bool kflag = false;
    // "size" of INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT; "type" of PTR, TYPEDEF, VOLATILE, CONST, RESTRICT,
    // FUNC, FUNC_PROTO (the return type), VAR, DECL_TAG, TYPE_TAG; 0 for FWD and ARRAY.
    uint32_t size_or_type = 0;

    uint32_t int_data = 0;                 // INT: encoding << 24 | bit offset << 16 | bits (BTF_INT_*)
    BtfArray array;                        // ARRAY
    std::vector<BtfMember> members;        // STRUCT, UNION
    std::vector<BtfEnumValue> enum_values; // ENUM, ENUM64
    std::vector<BtfParam> params;          // FUNC_PROTO
    uint32_t linkage = 0;                  // VAR: BTF_VAR_STATIC, _GLOBAL_ALLOCATED, _GLOBAL_EXTERN
    std::vector<BtfVarSecinfo> vars;       // DATASEC
    int32_t component_idx = -1;            // DECL_TAG: -1 tags the whole type, else a member or parameter index

    uint32_t int_encoding() const { return BTF_INT_ENCODING(int_data); }
    uint32_t int_offset() const { return BTF_INT_OFFSET(int_data); }
    uint32_t int_bits() const { return BTF_INT_BITS(int_data); }
    uint32_t member_bit_offset(size_t i) const
    {
        return kflag ? BTF_MEMBER_BIT_OFFSET(members.at(i).offset) : members.at(i).offset;
    }
    // 0 for a member that is not a bitfield.
    uint32_t member_bitfield_size(size_t i) const { return kflag ? BTF_MEMBER_BITFIELD_SIZE(members.at(i).offset) : 0; }

    bool operator==(const BtfType&) const = default;
};

// A member found by name, perhaps inside anonymous structs and unions: `parent` holds members[index]; bit_offset
// counts from the start of the type searched.
struct BtfMemberRef {
    uint32_t parent = 0;
    size_t index = 0;
    uint32_t bit_offset = 0;
};

class Btf {
public:
    // No types but void, a string section of "\0".
    explicit Btf(std::string section = ".BTF");

    // The section name errors start with ("section '.BTF': ...").
    const std::string& section() const { return section_; }

    // Types by id; types()[0] is void (kind UNKN), as the kernel numbers them.
    const std::vector<BtfType>& types() const { return types_; }
    // Throws base::Error for an id past the last type.
    const BtfType& type(uint32_t id) const;
    // The caller keeps the type consistent (vlen, references). Drops the lookup caches: edit through the reference
    // before the next lookup (take it again after one), or the lookups answer from before the edit.
    BtfType& mutable_type(uint32_t id);
    // Returns the new type's id.
    uint32_t add_type(BtfType type);

    // The string section, raw: name offsets index it. Edit in place through mutable_strings() (which drops the
    // lookup caches, as mutable_type does); add strings with add_string().
    const std::string& strings() const { return strings_; }
    std::string& mutable_strings();
    // The NUL-terminated string at `offset`; throws base::Error outside the string section.
    std::string_view string(uint32_t offset) const;
    // The offset of `s`: an existing string of the section if there is one, else appended.
    uint32_t add_string(std::string_view s);

    // The type's name; empty for void and anonymous types.
    std::string_view name(uint32_t id) const;
    // "type [12] STRUCT 'foo'", "type [3] PTR (anon)", for messages (non-printable bytes escaped).
    std::string label(uint32_t id) const;

    // Lookups fill caches, so that hostile BTF (100000 typedefs in a row, named by 65535 members) keeps every use
    // of them linear in all; a const Btf is therefore not safe to look up from two threads at once.

    // The lowest id of a type of `kind` named `name`. The first lookup builds a hash index of the names (linear:
    // each name is read up to 512 bytes at most; longer ones, which only INT, FLOAT and tags may have, are searched
    // one by one); each lookup is then O(length of name).
    std::optional<uint32_t> find(uint32_t kind, std::string_view name) const;
    // Follows TYPEDEF, VOLATILE, CONST, RESTRICT and TYPE_TAG to the first other type (0 for void). Throws
    // base::Error on a loop (which parse_btf refuses, but a caller's edit may make).
    uint32_t resolve(uint32_t id) const;
    // The size in bytes of a value of type `id`, as libbpf's btf__resolve_size: INT, ENUM, ENUM64, STRUCT, UNION,
    // DATASEC and FLOAT by their size, PTR by 8 (BPF's pointer size), ARRAY by elements x element size, through
    // modifiers, typedefs, VAR and DECL_TAG. Throws base::Error for void, FWD, FUNC, FUNC_PROTO, a size past
    // UINT32_MAX or a reference loop.
    uint32_t type_size(uint32_t id) const;
    // The member `name` of the STRUCT or UNION `id` (after resolve()), looking into anonymous struct and union
    // members as C does; nullopt when there is none. Throws base::Error when `id` is no struct or union.
    std::optional<BtfMemberRef> find_member(uint32_t id, std::string_view name) const;

    // Types and strings; the section name and the index do not count.
    friend bool operator==(const Btf& a, const Btf& b) { return a.types_ == b.types_ && a.strings_ == b.strings_; }

private:
    friend Btf parse_btf(std::span<const std::byte> bytes, std::string_view section);

    std::string section_;
    std::vector<BtfType> types_;
    std::string strings_;
    // The lookups' caches. The name index holds views into strings_, so a copy or a move of the Btf starts without
    // caches.
    struct NameKey {
        std::string_view name;
        uint32_t kind;
        bool operator==(const NameKey&) const = default;
    };
    struct NameKeyHash {
        size_t operator()(const NameKey& k) const noexcept
        {
            return std::hash<std::string_view>{}(k.name) * 31 + k.kind;
        }
    };
    // type_size() per id: unknown yet, a size, no size (made of `culprit`), or more than UINT32_MAX.
    struct SizeMemo {
        enum State : uint8_t { kUnknown, kSized, kNoSize, kTooLarge };
        uint32_t size = 0;
        uint32_t culprit = 0;
        State state = kUnknown;
    };
    struct Caches {
        Caches() = default;
        Caches(const Caches&) noexcept {}
        Caches(Caches&&) noexcept {}
        Caches& operator=(const Caches&) noexcept
        {
            reset();
            return *this;
        }
        Caches& operator=(Caches&&) noexcept
        {
            reset();
            return *this;
        }
        void reset() noexcept
        {
            names_built = false;
            first.clear();
            long_names.clear();
            resolved.clear();
            sizes.clear();
        }
        bool names_built = false;
        std::unordered_map<NameKey, uint32_t, NameKeyHash> first; // (name, kind) -> the lowest id
        std::vector<uint32_t> long_names;                         // ids of types named past 512 bytes
        std::vector<uint32_t> resolved;                           // resolve() per id; kUnresolved until known
        std::vector<SizeMemo> sizes;
    };
    mutable Caches caches_;
};

// Parses a BTF blob (an object's .BTF section, /sys/kernel/btf/vmlinux): the header (magic, version 1, no flags,
// hdr_len >= 24 with any further header bytes zero, 4-byte aligned type section, type and string sections inside
// the blob and apart), the string section (starts and ends with NUL) and every kind Linux 6.18 accepts, INT to
// ENUM64. Checks every name offset (and, as the kernel, that identifier and DATASEC names are at most 512 bytes,
// KSYM_NAME_LEN), every type id a type refers to, the tails vlen implies, and that no type contains itself by value
// (a loop through typedefs, modifiers, arrays, struct members or vars). Linear in the size of the blob. Throws
// base::Error "section 'SECTION': type [ID] KIND 'name': defect" on any malformed input.
Btf parse_btf(std::span<const std::byte> bytes, std::string_view section = ".BTF");

// Writes the blob back: a 24-byte header, the types, the strings, as clang and pahole lay them out. For an
// unmodified clang object, encode(parse_btf(x)) == x. Throws base::Error when a type's vlen disagrees with its
// members, values, params or vars, or the string section does not start and end with NUL.
std::vector<std::byte> encode(const Btf& btf);

// --- fix-ups before loading ----------------------------------------------------------------------------------------

// What the ELF symbol behind a global VAR says: its offset in its section (st_value) and whether its visibility is
// STV_HIDDEN or STV_INTERNAL.
struct BtfVarSymbol {
    uint64_t offset = 0;
    bool hidden = false;
};

// libbpf's btf_fixup_datasec, for every DATASEC: clang leaves DATASEC sizes and var offsets 0 in a .o file. A
// DATASEC of size 0 gets the size of the ELF section of its name and each of its global VARs the offset of the
// symbol of its name; a hidden symbol makes its VAR static (as libbpf does, so that the verifier checks such
// functions and data as static). Static and extern VARs keep their offsets, .kconfig and .ksyms are only sorted, and
// every DATASEC's entries are sorted by offset. Throws base::Error naming the DATASEC and what is missing: a section
// size, a symbol, an entry that is no VAR, a size or offset past UINT32_MAX.
void fixup_datasecs(Btf& btf, const std::function<std::optional<uint64_t>(std::string_view section)>& section_size,
                    const std::function<std::optional<BtfVarSymbol>(std::string_view var)>& symbol);
// The same with the sizes of `file`'s sections and its global or weak STT_OBJECT symbols (libbpf's
// find_elf_var_sym).
void fixup_datasecs(Btf& btf, const ElfFile& file);

// The BTF kinds and forms a kernel accepts, as libbpf probes them (FEAT_BTF_*). The defaults are a current kernel.
struct BtfKernelSupport {
    bool func = true;          // FUNC, FUNC_PROTO (FEAT_BTF_FUNC)
    bool func_global = true;   // FUNC with BTF_FUNC_GLOBAL linkage (FEAT_BTF_GLOBAL_FUNC)
    bool datasec = true;       // VAR, DATASEC (FEAT_BTF_DATASEC)
    bool qmark_datasec = true; // DATASEC names starting with '?' (FEAT_BTF_QMARK_DATASEC)
    bool float_ = true;        // FLOAT (FEAT_BTF_FLOAT)
    bool decl_tag = true;      // DECL_TAG (FEAT_BTF_DECL_TAG)
    bool type_tag = true;      // TYPE_TAG (FEAT_BTF_TYPE_TAG)
    bool enum64 = true;        // ENUM64 and the signedness kflag of ENUM (FEAT_BTF_ENUM64)

    bool all() const
    {
        return func && func_global && datasec && qmark_datasec && float_ && decl_tag && type_tag && enum64;
    }
};

// libbpf's bpf_object__sanitize_btf: rewrites, in place and keeping every type id, what the kernel lacks. Sanitize a
// copy to load; the object's own BTF (for map key/value ids, CO-RE) stays as parsed. In libbpf's order, per type:
//   !datasec:  VAR -> INT size 1, 8 bits (name kept); DATASEC -> STRUCT whose members are the vars (name = the var's
//              name, bit offset = offset * 8), '.' and '?' in its name replaced by '_' in the string section
//   !decl_tag: DECL_TAG -> INT size 1, 8 bits (name kept)
//   !qmark_datasec (datasec supported): a DATASEC name's leading '?' -> '_'
//   !func:     FUNC_PROTO -> ENUM of size 4 with one value per param (name, type id as value); FUNC -> TYPEDEF
//   !func_global (func supported): every FUNC -> linkage static (libbpf does not look at the linkage it had)
//   !float_:   FLOAT -> anonymous STRUCT of the same size, no members
//   !type_tag: TYPE_TAG -> anonymous CONST of the same type
//   !enum64:   ENUM loses its kflag; ENUM64 -> UNION of the same size, each value a member of type
//              'enum64_placeholder' (an INT of size 1, 8 bits, no encoding, added once, at the end) at offset 0
// Names are edited in place in the string section, as libbpf does: a string shared with another name changes there
// too.
// Throws base::Error when a DATASEC var offset * 8 does not fit a member's 32-bit offset.
void sanitize(Btf& btf, const BtfKernelSupport& kernel);

// What BPF_BTF_LOAD takes for `btf` (fixed up already) on `kernel`: a sanitized copy, encoded. The ids stay those of
// `btf`, so map key/value ids and func_info type ids found in it hold for the loaded BTF.
std::vector<std::byte> encode_for_kernel(const Btf& btf, const BtfKernelSupport& kernel);

// --- BTF-defined maps --------------------------------------------------------------------------------------------

// libbpf's LIBBPF_PIN_* (the values of a map definition's `pinning`).
inline constexpr uint32_t kBtfPinNone = 0;
inline constexpr uint32_t kBtfPinByName = 1;

// A map definition of section ".maps": a VAR whose type is a STRUCT of __uint(name, N) members (int (*name)[N]) and
// __type(name, T) members (T *name), as libbpf's parse_btf_map_def reads it.
struct BtfMapDef {
    std::string name; // the VAR's name
    uint32_t type = 0;
    uint32_t key_size = 0;
    uint32_t value_size = 0;
    uint32_t max_entries = 0;
    uint32_t map_flags = 0;
    uint32_t numa_node = 0;
    uint64_t map_extra = 0;
    uint32_t pinning = kBtfPinNone;
    uint32_t key_type_id = 0;   // from __type(key, T): T's id, else 0
    uint32_t value_type_id = 0; // from __type(value, T): T's id, else 0
    // A map-in-map's inner map, from __array(values, struct inner): one element, named "NAME.inner". Empty otherwise.
    std::vector<BtfMapDef> inner;
    // __array(values, ...) of a PROG_ARRAY or of a map-in-map: the initial values come from relocations of the
    // .maps section (the loader's business). value_size is then 4.
    bool has_values = false;
};

// The map definition of the VAR `var_type_id` (a DATASEC '.maps' entry's type). Members: type, max_entries,
// map_flags, numa_node, key_size, value_size, pinning (__uint), map_extra (__uint or __ulong), key, value
// (__type; their sizes must agree with key_size / value_size), values (__array, last). Throws base::Error naming the
// map and the defect: a VAR that is not global, a definition that is no STRUCT, an unknown or malformed member,
// conflicting sizes, an invalid pinning, no type.
BtfMapDef parse_btf_map_def(const Btf& btf, uint32_t var_type_id);
// Every map of the DATASEC `section` in the order of its entries; empty when there is no such DATASEC.
std::vector<BtfMapDef> parse_btf_maps(const Btf& btf, std::string_view section = ".maps");

// --- .BTF.ext ----------------------------------------------------------------------------------------------------
// Records as in the file: insn_off counts bytes from the start of the ELF section. The loader converts them to
// instruction indices relative to its program (program_func_info / program_line_info do it for func and line info).

struct BtfFuncInfo {
    uint32_t insn_off = 0;
    uint32_t type_id = 0; // a FUNC
    bool operator==(const BtfFuncInfo&) const = default;
};

struct BtfLineInfo {
    uint32_t insn_off = 0;
    uint32_t file_name_off = 0; // into the .BTF string section
    uint32_t line_off = 0;      // the source line's text
    uint32_t line_col = 0;      // line << 10 | column (BPF_LINE_INFO_LINE_NUM / _LINE_COL)
    bool operator==(const BtfLineInfo&) const = default;
};

struct BtfCoreRelo {
    uint32_t insn_off = 0;
    uint32_t type_id = 0; // the local root type
    uint32_t access_str_off = 0;
    uint32_t kind = 0;               // enum bpf_core_relo_kind
    std::string access;              // "0:1:2"
    std::vector<uint32_t> accessors; // {0, 1, 2}
    bool operator==(const BtfCoreRelo&) const = default;
};

// The records of one ELF section (a program section, ".text").
template <typename Record> struct BtfExtSection {
    std::string section;
    std::vector<Record> records;
    bool operator==(const BtfExtSection&) const = default;
};

struct BtfExt {
    // The record sizes the file declares (at least the size of the structs above; larger records are read for
    // their known prefix, as the kernel allows); 0 when the subsection is absent.
    uint32_t func_info_rec_size = 0;
    uint32_t line_info_rec_size = 0;
    uint32_t core_relo_rec_size = 0;
    // Per ELF section, in the order of first appearance; a section named twice has its records joined.
    std::vector<BtfExtSection<BtfFuncInfo>> func_info;
    std::vector<BtfExtSection<BtfLineInfo>> line_info;
    std::vector<BtfExtSection<BtfCoreRelo>> core_relos;

    // The records of `section`, empty when it has none.
    std::span<const BtfFuncInfo> func_info_of(std::string_view section) const;
    std::span<const BtfLineInfo> line_info_of(std::string_view section) const;
    std::span<const BtfCoreRelo> core_relos_of(std::string_view section) const;
};

// Parses .BTF.ext against the object's .BTF: the header (magic, version 1, no flags, hdr_len >= 24, and the CO-RE
// part when hdr_len >= 32), each subsection (4-byte aligned, inside the section, a record size >= the record's
// struct and a multiple of 4, section entries with a valid name and a count that fits), and each record: insn_off a
// multiple of 8, func_info naming a FUNC, line_info naming valid strings, core_relo naming a type, a valid kind and
// an access string of decimal indices joined by ':' ("0" for type-based kinds, one index for enum values, at most
// 64). Throws base::Error "section 'SECTION': func_info: section 'sockops': record #3: defect".
BtfExt parse_btf_ext(std::span<const std::byte> bytes, const Btf& btf, std::string_view section = ".BTF.ext");

// The func_info / line_info of one program for BPF_PROG_LOAD: the records of `section` whose insn_off lies in
// [program_offset, program_offset + program_size) (bytes), with insn_off made an instruction index relative to the
// program's first instruction.
std::vector<bpf_func_info> program_func_info(const BtfExt& ext, std::string_view section, uint64_t program_offset,
                                             uint64_t program_size);
std::vector<bpf_line_info> program_line_info(const BtfExt& ext, std::string_view section, uint64_t program_offset,
                                             uint64_t program_size);

} // namespace sockredir::elf
