// BTF parsing and checking (one bounds-checked accessor, every offset, id and name checked), lookups, encoding,
// libbpf's DATASEC fix-ups and kernel sanitizing, BTF-defined map definitions, and .BTF.ext.
#include "elf/btf.hpp"

#include <elf.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "loader/base/error.hpp"

namespace sockredir::elf {

namespace {

// The info word: vlen in bits 0-15, kind in 24-28, kflag in 31; bits 16-23 and 29-30 are reserved (the kernel
// refuses them set, "Invalid btf_info").
constexpr uint32_t kInfoReserved = 0x60ff0000;
// BTF_INT_ENCODING, _OFFSET and _BITS cover bits 0-7, 16-23 and 24-27; the kernel refuses bits 28-31 set.
constexpr uint32_t kIntReserved = 0xf0000000;
// BPF's pointer size: libbpf enforces 8-byte pointers for BPF-targeted BTF.
constexpr uint32_t kPointerSize = 8;
// resolve()'s cache: not yet known (no type id reaches it: BTF_MAX_TYPE is 0xfffff).
constexpr uint32_t kUnresolved = 0xffffffff;
// libbpf's BPF_CORE_SPEC_MAX_LEN: the most indices an access string may hold.
constexpr size_t kCoreSpecMaxLen = 64;
// The longest name a message shows; hostile names can be megabytes long.
constexpr size_t kMaxShownName = 80;
// The kernel's KSYM_NAME_LEN: the longest identifier or DATASEC name it accepts (btf_name_valid_identifier,
// btf_name_valid_section). Bounded names keep every per-type use of a name linear: many types may name one long
// string.
constexpr size_t kMaxName = 512;
// .BTF.ext section names and CO-RE access strings (at most 64 indices of up to 10 digits: 704 bytes), bounded for
// the same reason.
constexpr size_t kMaxExtString = 1024;

// The .BTF.ext header (libbpf's struct btf_ext_header; not in the UAPI headers). Offsets count from its end.
struct BtfExtHeader {
    uint16_t magic;
    uint8_t version;
    uint8_t flags;
    uint32_t hdr_len;
    uint32_t func_info_off;
    uint32_t func_info_len;
    uint32_t line_info_off;
    uint32_t line_info_len;
};
static_assert(sizeof(BtfExtHeader) == 24);
// The optional part, present when hdr_len >= 32.
struct BtfExtCoreHeader {
    uint32_t core_relo_off;
    uint32_t core_relo_len;
};
// struct bpf_core_relo with its kind as the u32 of the file: loading a value outside enum bpf_core_relo_kind
// through the enum type is undefined behaviour (found by fuzz_btf).
struct CoreReloRecord {
    uint32_t insn_off;
    uint32_t type_id;
    uint32_t access_str_off;
    uint32_t kind;
};
static_assert(sizeof(CoreReloRecord) == sizeof(bpf_core_relo));
static_assert(offsetof(CoreReloRecord, kind) == offsetof(bpf_core_relo, kind));
// One section's entry in a subsection, followed by num_info records (libbpf's struct btf_ext_info_sec).
struct BtfExtInfoSec {
    uint32_t sec_name_off;
    uint32_t num_info;
};

std::string hex(uint64_t v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// Names come from the input: bytes outside printable ASCII are escaped, so that every message stays one line.
std::string printable(std::string_view s)
{
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (i == kMaxShownName) {
            out += "...";
            break;
        }
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

std::string quoted(std::string_view s)
{
    return "'" + printable(s) + "'";
}

[[noreturn]] void fail(std::string_view section, const std::string& what)
{
    throw Error("section " + quoted(section) + ": " + what);
}

// The one way bytes of the input become a struct: bounds-checked, then memcpy'd.
template <typename T>
T read_at(std::span<const std::byte> bytes, uint64_t offset, std::string_view section, const std::string& what)
{
    static_assert(std::is_trivially_copyable_v<T>);
    if (offset > bytes.size() || bytes.size() - offset < sizeof(T))
        fail(section, what + ": " + std::to_string(sizeof(T)) + " bytes at offset " + hex(offset) +
                          " lie past the end (" + std::to_string(bytes.size()) + " bytes)");
    T out;
    std::memcpy(&out, bytes.data() + offset, sizeof(T));
    return out;
}

template <typename T> void append(std::vector<std::byte>& out, const T& value)
{
    static_assert(std::is_trivially_copyable_v<T>);
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &value, sizeof(T));
}

// The string at `offset` (< strings.size()): up to the next NUL, which std::string keeps past its end if the
// section has none.
std::string_view string_in(const std::string& strings, uint32_t offset)
{
    return std::string_view(strings.data() + offset);
}

// The string at `offset` (< strings.size()) if it ends within `max` bytes, else nullopt; reads at most max + 1
// bytes.
std::optional<std::string_view> bounded_string(const std::string& strings, uint32_t offset, size_t max)
{
    const size_t n = std::min(strings.size() - offset, max + 1);
    const char* begin = strings.data() + offset;
    const void* nul = std::memchr(begin, '\0', n);
    if (nul == nullptr)
        return std::nullopt;
    return std::string_view(begin, static_cast<const char*>(nul));
}

// Kinds whose names the kernel does not check as identifiers: tag values, and the names of INT and FLOAT (which
// libbpf's sanitizing gives a DECL_TAG's value).
bool name_unbounded(uint32_t kind)
{
    return kind == BTF_KIND_DECL_TAG || kind == BTF_KIND_TYPE_TAG || kind == BTF_KIND_INT || kind == BTF_KIND_FLOAT;
}

bool is_modifier(uint32_t kind)
{
    return kind == BTF_KIND_TYPEDEF || kind == BTF_KIND_VOLATILE || kind == BTF_KIND_CONST ||
           kind == BTF_KIND_RESTRICT || kind == BTF_KIND_TYPE_TAG;
}

bool is_composite(uint32_t kind)
{
    return kind == BTF_KIND_STRUCT || kind == BTF_KIND_UNION;
}

// Kinds whose size_or_type is a type id.
bool has_type_ref(uint32_t kind)
{
    switch (kind) {
    case BTF_KIND_PTR:
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_CONST:
    case BTF_KIND_RESTRICT:
    case BTF_KIND_FUNC:
    case BTF_KIND_FUNC_PROTO:
    case BTF_KIND_VAR:
    case BTF_KIND_DECL_TAG:
    case BTF_KIND_TYPE_TAG:
        return true;
    default:
        return false;
    }
}

std::string label_of(uint32_t id, const BtfType& t, const std::string& strings)
{
    if (id == 0)
        return "void";
    // Only what printable() shows: a hostile name may be megabytes long.
    std::string_view name;
    if (t.name_off < strings.size()) {
        name = std::string_view(strings.data() + t.name_off, std::min(strings.size() - t.name_off, kMaxShownName + 1));
        name = name.substr(0, name.find('\0'));
    }
    return "type [" + std::to_string(id) + "] " + btf_kind_name(t.kind) + " " +
           (name.empty() ? std::string("(anon)") : quoted(name));
}

// --- references by value ---------------------------------------------------------------------------------------
// The edges along which a type contains another: a loop along them makes sizes and resolution infinite. A pointer
// or a function prototype does not contain what it names (struct list { struct list* next; } is fine).

size_t value_ref_count(const BtfType& t)
{
    switch (t.kind) {
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_CONST:
    case BTF_KIND_RESTRICT:
    case BTF_KIND_TYPE_TAG:
    case BTF_KIND_VAR:
    case BTF_KIND_DECL_TAG:
    case BTF_KIND_ARRAY:
        return 1;
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
        return t.members.size();
    case BTF_KIND_DATASEC:
        return t.vars.size();
    default:
        return 0;
    }
}

uint32_t value_ref(const BtfType& t, size_t i)
{
    switch (t.kind) {
    case BTF_KIND_ARRAY:
        return t.array.type;
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
        return t.members[i].type;
    case BTF_KIND_DATASEC:
        return t.vars[i].type;
    default:
        return t.size_or_type;
    }
}

// --- parsing ---------------------------------------------------------------------------------------------------

struct Parser {
    std::string_view section;
    std::vector<BtfType>& types;
    const std::string& strings;

    [[noreturn]] void fail_type(uint32_t id, const std::string& what) const
    {
        fail(section, label_of(id, types[id], strings) + ": " + what);
    }

    void check_name(uint32_t id, const BtfType& t) const
    {
        const auto at = "type [" + std::to_string(id) + "] " + btf_kind_name(t.kind);
        if (t.name_off >= strings.size())
            fail(section, at + ": name offset " + hex(t.name_off) + " is outside the string section (" +
                              std::to_string(strings.size()) + " bytes)");
        if (!name_unbounded(t.kind) && !bounded_string(strings, t.name_off, kMaxName))
            fail(section,
                 at + ": name is longer than the kernel's " + std::to_string(kMaxName) + " bytes (KSYM_NAME_LEN)");
    }

    // A member, value or param name: a valid offset and no longer than an identifier the kernel accepts.
    void check_string(uint32_t id, uint32_t offset, const std::string& what) const
    {
        if (offset >= strings.size())
            fail_type(id, what + " name offset " + hex(offset) + " is outside the string section (" +
                              std::to_string(strings.size()) + " bytes)");
        if (!bounded_string(strings, offset, kMaxName))
            fail_type(id, what + " name is longer than the kernel's " + std::to_string(kMaxName) +
                              " bytes (KSYM_NAME_LEN)");
    }

    void require_name(uint32_t id, const BtfType& t) const
    {
        if (strings[t.name_off] == '\0') // not the length: a hostile name may be long, and named by many types
            fail_type(id, "has no name");
    }

    void require_vlen_zero(uint32_t id, const BtfType& t) const
    {
        if (t.vlen != 0)
            fail_type(id, "vlen " + std::to_string(t.vlen) + " is not 0");
    }

    void refuse_kflag(uint32_t id, const BtfType& t) const
    {
        if (t.kflag)
            fail_type(id, "kflag is set");
    }

    // The kind-specific checks that need no other type (the kernel's check_meta).
    void check_meta(uint32_t id, const BtfType& t) const
    {
        switch (t.kind) {
        case BTF_KIND_INT: {
            require_vlen_zero(id, t);
            refuse_kflag(id, t);
            if ((t.int_data & kIntReserved) != 0)
                fail_type(id, "int data " + hex(t.int_data) + " sets reserved bits");
            const uint32_t bits = t.int_offset() + t.int_bits();
            if (t.size_or_type == 0 || t.size_or_type > 16)
                fail_type(id, "size " + std::to_string(t.size_or_type) + " is not 1 to 16 bytes");
            if (bits > uint64_t{t.size_or_type} * 8)
                fail_type(id, "offset " + std::to_string(t.int_offset()) + " + " + std::to_string(t.int_bits()) +
                                  " bits exceed its size of " + std::to_string(t.size_or_type) + " bytes");
            const uint32_t enc = t.int_encoding();
            if (enc != 0 && enc != BTF_INT_SIGNED && enc != BTF_INT_CHAR && enc != BTF_INT_BOOL)
                fail_type(id, "encoding " + std::to_string(enc) + " is not SIGNED, CHAR or BOOL");
            break;
        }
        case BTF_KIND_PTR:
        case BTF_KIND_VOLATILE:
        case BTF_KIND_CONST:
        case BTF_KIND_RESTRICT:
            require_vlen_zero(id, t);
            refuse_kflag(id, t);
            break;
        case BTF_KIND_TYPEDEF:
            require_vlen_zero(id, t);
            refuse_kflag(id, t);
            require_name(id, t);
            break;
        case BTF_KIND_TYPE_TAG: // kflag: an __attribute__ rather than a btf_type_tag (Linux 6.14)
            require_vlen_zero(id, t);
            require_name(id, t);
            break;
        case BTF_KIND_ARRAY:
            require_vlen_zero(id, t);
            refuse_kflag(id, t);
            if (t.size_or_type != 0)
                fail_type(id, "size " + std::to_string(t.size_or_type) + " is not 0");
            break;
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION:
            for (size_t i = 0; i < t.members.size(); ++i)
                check_string(id, t.members[i].name_off, "member #" + std::to_string(i) + ":");
            break;
        case BTF_KIND_ENUM:
        case BTF_KIND_ENUM64:
            if (t.size_or_type != 1 && t.size_or_type != 2 && t.size_or_type != 4 && t.size_or_type != 8)
                fail_type(id, "size " + std::to_string(t.size_or_type) + " is not 1, 2, 4 or 8");
            for (size_t i = 0; i < t.enum_values.size(); ++i)
                check_string(id, t.enum_values[i].name_off, "value #" + std::to_string(i) + ":");
            break;
        case BTF_KIND_FWD: // kflag: a union rather than a struct
            require_vlen_zero(id, t);
            require_name(id, t);
            break;
        case BTF_KIND_FUNC:
            refuse_kflag(id, t);
            require_name(id, t);
            if (t.vlen > BTF_FUNC_EXTERN)
                fail_type(id, "linkage " + std::to_string(t.vlen) + " is not static, global or extern");
            break;
        case BTF_KIND_FUNC_PROTO:
            refuse_kflag(id, t);
            for (size_t i = 0; i < t.params.size(); ++i)
                check_string(id, t.params[i].name_off, "param #" + std::to_string(i) + ":");
            break;
        case BTF_KIND_VAR:
            require_vlen_zero(id, t);
            refuse_kflag(id, t);
            require_name(id, t);
            if (t.linkage > BTF_VAR_GLOBAL_EXTERN)
                fail_type(id, "linkage " + std::to_string(t.linkage) + " is not static, global or extern");
            break;
        case BTF_KIND_DATASEC:
            refuse_kflag(id, t);
            require_name(id, t);
            break;
        case BTF_KIND_FLOAT:
            require_vlen_zero(id, t);
            refuse_kflag(id, t);
            if (t.size_or_type != 2 && t.size_or_type != 4 && t.size_or_type != 8 && t.size_or_type != 12 &&
                t.size_or_type != 16)
                fail_type(id, "size " + std::to_string(t.size_or_type) + " is not 2, 4, 8, 12 or 16");
            break;
        case BTF_KIND_DECL_TAG: // kflag: an __attribute__ rather than a btf_decl_tag (Linux 6.14)
            require_vlen_zero(id, t);
            require_name(id, t);
            if (t.component_idx < -1)
                fail_type(id, "component_idx " + std::to_string(t.component_idx) + " is below -1");
            break;
        default:
            break;
        }
    }

    // Reads one type at `pos` of the type section; returns the bytes it took.
    size_t read_type(std::span<const std::byte> sec, size_t pos, uint32_t id)
    {
        if (sec.size() - pos < sizeof(btf_type))
            fail(section, "type [" + std::to_string(id) + "]: truncated (" + std::to_string(sec.size() - pos) +
                              " bytes left in the type section, a type takes 12)");
        const auto raw = read_at<btf_type>(sec, pos, section, "type [" + std::to_string(id) + "]");
        BtfType t;
        t.kind = BTF_INFO_KIND(raw.info);
        t.name_off = raw.name_off;
        t.vlen = static_cast<uint16_t>(BTF_INFO_VLEN(raw.info));
        t.kflag = BTF_INFO_KFLAG(raw.info) != 0;
        t.size_or_type = raw.size;
        if (t.kind == BTF_KIND_UNKN || t.kind > BTF_KIND_MAX)
            fail(section, "type [" + std::to_string(id) + "]: unknown kind " + std::to_string(t.kind) + " (info " +
                              hex(raw.info) + ")");
        check_name(id, t);
        types.push_back(std::move(t));
        BtfType& out = types.back();
        if ((raw.info & kInfoReserved) != 0)
            fail_type(id, "info " + hex(raw.info) + " sets reserved bits");

        size_t entry = 0;
        const char* what = nullptr;
        switch (out.kind) {
        case BTF_KIND_INT:
        case BTF_KIND_VAR:
        case BTF_KIND_DECL_TAG:
            entry = 4;
            break;
        case BTF_KIND_ARRAY:
            entry = sizeof(btf_array);
            break;
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION:
            entry = sizeof(btf_member);
            what = "members";
            break;
        case BTF_KIND_ENUM:
            entry = sizeof(btf_enum);
            what = "values";
            break;
        case BTF_KIND_ENUM64:
            entry = sizeof(btf_enum64);
            what = "values";
            break;
        case BTF_KIND_FUNC_PROTO:
            entry = sizeof(btf_param);
            what = "params";
            break;
        case BTF_KIND_DATASEC:
            entry = sizeof(btf_var_secinfo);
            what = "vars";
            break;
        default:
            break;
        }
        const size_t count = what != nullptr ? out.vlen : (entry != 0 ? 1 : 0);
        const size_t tail = count * entry;
        pos += sizeof(btf_type);
        const size_t left = sec.size() - pos;
        if (tail > left)
            fail_type(id, (what != nullptr ? std::to_string(count) + " " + what : std::string("its data")) + " (" +
                              std::to_string(tail) + " bytes) lie past the end of the type section (" +
                              std::to_string(left) + " bytes left)");
        const std::string at = "type [" + std::to_string(id) + "]";
        switch (out.kind) {
        case BTF_KIND_INT:
            out.int_data = read_at<uint32_t>(sec, pos, section, at);
            break;
        case BTF_KIND_VAR:
            out.linkage = read_at<btf_var>(sec, pos, section, at).linkage;
            break;
        case BTF_KIND_DECL_TAG:
            out.component_idx = read_at<btf_decl_tag>(sec, pos, section, at).component_idx;
            break;
        case BTF_KIND_ARRAY: {
            const auto a = read_at<btf_array>(sec, pos, section, at);
            out.array = {a.type, a.index_type, a.nelems};
            break;
        }
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION:
            out.members.resize(count);
            for (size_t i = 0; i < count; ++i) {
                const auto m = read_at<btf_member>(sec, pos + i * entry, section, at);
                out.members[i] = {m.name_off, m.type, m.offset};
            }
            break;
        case BTF_KIND_ENUM:
            out.enum_values.resize(count);
            for (size_t i = 0; i < count; ++i) {
                const auto e = read_at<btf_enum>(sec, pos + i * entry, section, at);
                out.enum_values[i] = {e.name_off, uint64_t{static_cast<uint32_t>(e.val)}};
            }
            break;
        case BTF_KIND_ENUM64:
            out.enum_values.resize(count);
            for (size_t i = 0; i < count; ++i) {
                const auto e = read_at<btf_enum64>(sec, pos + i * entry, section, at);
                out.enum_values[i] = {e.name_off, uint64_t{e.val_lo32} | uint64_t{e.val_hi32} << 32};
            }
            break;
        case BTF_KIND_FUNC_PROTO:
            out.params.resize(count);
            for (size_t i = 0; i < count; ++i) {
                const auto p = read_at<btf_param>(sec, pos + i * entry, section, at);
                out.params[i] = {p.name_off, p.type};
            }
            break;
        case BTF_KIND_DATASEC:
            out.vars.resize(count);
            for (size_t i = 0; i < count; ++i) {
                const auto v = read_at<btf_var_secinfo>(sec, pos + i * entry, section, at);
                out.vars[i] = {v.type, v.offset, v.size};
            }
            break;
        default:
            break;
        }
        check_meta(id, out);
        return sizeof(btf_type) + tail;
    }

    void check_ref(uint32_t id, uint32_t ref, const std::string& what) const
    {
        if (ref >= types.size())
            fail_type(id, what + "names type " + std::to_string(ref) + " of " + std::to_string(types.size() - 1));
    }

    // Every type id a type names exists (void, 0, included).
    void check_refs(uint32_t id) const
    {
        const BtfType& t = types[id];
        if (has_type_ref(t.kind))
            check_ref(id, t.size_or_type, t.kind == BTF_KIND_FUNC_PROTO ? "return type " : "");
        switch (t.kind) {
        case BTF_KIND_ARRAY:
            check_ref(id, t.array.type, "element ");
            check_ref(id, t.array.index_type, "index ");
            break;
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION:
            for (size_t i = 0; i < t.members.size(); ++i)
                check_ref(id, t.members[i].type, "member #" + std::to_string(i) + " ");
            break;
        case BTF_KIND_FUNC_PROTO:
            for (size_t i = 0; i < t.params.size(); ++i)
                check_ref(id, t.params[i].type, "param #" + std::to_string(i) + " ");
            break;
        case BTF_KIND_DATASEC:
            for (size_t i = 0; i < t.vars.size(); ++i)
                check_ref(id, t.vars[i].type, "var #" + std::to_string(i) + " ");
            break;
        default:
            break;
        }
    }

    std::string target(uint32_t ref) const { return label_of(ref, types[ref], strings); }

    // What a type requires of the types it names, all ids being valid.
    void check_targets(uint32_t id) const
    {
        const BtfType& t = types[id];
        switch (t.kind) {
        case BTF_KIND_ARRAY:
            if (t.array.type == 0)
                fail_type(id, "element type is void");
            break;
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION:
            for (size_t i = 0; i < t.members.size(); ++i)
                if (t.members[i].type == 0)
                    fail_type(id, "member #" + std::to_string(i) + " is void");
            break;
        case BTF_KIND_FUNC:
            if (types[t.size_or_type].kind != BTF_KIND_FUNC_PROTO)
                fail_type(id, "names " + target(t.size_or_type) + ", not a FUNC_PROTO");
            break;
        case BTF_KIND_FUNC_PROTO:
            for (size_t i = 0; i < t.params.size(); ++i) {
                const auto& p = t.params[i];
                // Only the last parameter may be void, and unnamed: the "..." of a variadic function.
                if (p.type == 0 && (i + 1 != t.params.size() || p.name_off != 0))
                    fail_type(id, "param #" + std::to_string(i) + " is void");
            }
            break;
        case BTF_KIND_DATASEC:
            for (size_t i = 0; i < t.vars.size(); ++i) {
                const uint32_t v = t.vars[i].type;
                // A .ksyms DATASEC of a .o file holds the FUNCs of extern kfuncs; libbpf replaces them.
                if (types[v].kind != BTF_KIND_VAR && types[v].kind != BTF_KIND_FUNC)
                    fail_type(id, "var #" + std::to_string(i) + " names " + target(v) + ", not a VAR");
            }
            break;
        case BTF_KIND_DECL_TAG: {
            const uint32_t ref = t.size_or_type;
            const BtfType& r = types[ref];
            const bool whole = t.component_idx == -1;
            if (r.kind == BTF_KIND_VAR || r.kind == BTF_KIND_TYPEDEF) {
                if (!whole)
                    fail_type(id, "component_idx " + std::to_string(t.component_idx) + " of " + target(ref) +
                                      ", which has no components");
            } else if (is_composite(r.kind)) {
                if (!whole && static_cast<uint32_t>(t.component_idx) >= r.members.size())
                    fail_type(id, "component_idx " + std::to_string(t.component_idx) + " is past the " +
                                      std::to_string(r.members.size()) + " members of " + target(ref));
            } else if (r.kind == BTF_KIND_FUNC) {
                if (!whole) {
                    check_targets(ref); // the FUNC names a FUNC_PROTO
                    const auto& proto = types[r.size_or_type];
                    if (static_cast<uint32_t>(t.component_idx) >= proto.params.size())
                        fail_type(id, "component_idx " + std::to_string(t.component_idx) + " is past the " +
                                          std::to_string(proto.params.size()) + " params of " + target(ref));
                }
            } else {
                fail_type(id, "tags " + target(ref) + " (only a STRUCT, UNION, VAR, FUNC or TYPEDEF)");
            }
            break;
        }
        default:
            break;
        }
    }

    // No type contains itself by value: an iterative depth-first search, linear in types and references.
    void check_loops() const
    {
        enum : uint8_t { kUnseen, kOpen, kDone };
        std::vector<uint8_t> state(types.size(), kUnseen);
        std::vector<std::pair<uint32_t, size_t>> stack; // (type, next reference)
        for (uint32_t root = 1; root < types.size(); ++root) {
            if (state[root] != kUnseen)
                continue;
            state[root] = kOpen;
            stack.push_back({root, 0});
            while (!stack.empty()) {
                auto& [id, next] = stack.back();
                const BtfType& t = types[id];
                if (next == value_ref_count(t)) {
                    state[id] = kDone;
                    stack.pop_back();
                    continue;
                }
                const uint32_t ref = value_ref(t, next++);
                if (ref == 0 || state[ref] == kDone)
                    continue;
                if (state[ref] == kOpen)
                    fail_type(ref, "contains itself (a loop through " + target(id) + ")");
                state[ref] = kOpen;
                stack.push_back({ref, 0});
            }
        }
    }
};

struct Range {
    uint64_t off;
    uint64_t len;
};

std::string range_text(Range r)
{
    return "(offset " + std::to_string(r.off) + ", " + std::to_string(r.len) + " bytes)";
}

} // namespace

std::string btf_kind_name(uint32_t kind)
{
    static constexpr std::array<const char*, NR_BTF_KINDS> kNames = {
        "UNKN",  "INT",      "PTR",  "ARRAY",      "STRUCT", "UNION",   "ENUM",  "FWD",      "TYPEDEF",  "VOLATILE",
        "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR",    "DATASEC", "FLOAT", "DECL_TAG", "TYPE_TAG", "ENUM64"};
    if (kind < kNames.size())
        return kNames[kind];
    return "kind " + std::to_string(kind);
}

// --- Btf -------------------------------------------------------------------------------------------------------

Btf::Btf(std::string section) : section_(std::move(section)), types_(1), strings_(1, '\0') {}

const BtfType& Btf::type(uint32_t id) const
{
    if (id >= types_.size())
        fail(section_, "type " + std::to_string(id) + " of " + std::to_string(types_.size() - 1) + " does not exist");
    return types_[id];
}

BtfType& Btf::mutable_type(uint32_t id)
{
    (void)type(id);
    caches_.reset();
    return types_[id];
}

uint32_t Btf::add_type(BtfType type)
{
    if (types_.size() > BTF_MAX_TYPE)
        fail(section_, "cannot add a type past " + std::to_string(BTF_MAX_TYPE));
    caches_.reset();
    types_.push_back(std::move(type));
    return static_cast<uint32_t>(types_.size() - 1);
}

std::string& Btf::mutable_strings()
{
    caches_.reset();
    return strings_;
}

std::string_view Btf::string(uint32_t offset) const
{
    if (offset >= strings_.size())
        fail(section_, "string offset " + hex(offset) + " is outside the string section (" +
                           std::to_string(strings_.size()) + " bytes)");
    const char* begin = strings_.data() + offset;
    const void* nul = std::memchr(begin, '\0', strings_.size() - offset);
    if (nul == nullptr)
        fail(section_, "string at offset " + hex(offset) + " is not NUL-terminated");
    return std::string_view(begin, static_cast<const char*>(nul));
}

uint32_t Btf::add_string(std::string_view s)
{
    if (s.empty())
        return 0;
    if (s.find('\0') != std::string_view::npos)
        fail(section_, "cannot add a string holding NUL");
    // A whole string of the section: preceded by NUL (the section starts with one) and followed by one.
    std::string needle(1, '\0');
    needle.append(s);
    needle.push_back('\0');
    const auto at = strings_.find(needle);
    if (at != std::string::npos)
        return static_cast<uint32_t>(at + 1);
    if (strings_.empty() || strings_.back() != '\0')
        fail(section_, "string section does not end with NUL");
    if (strings_.size() + s.size() + 1 > uint64_t{BTF_MAX_NAME_OFFSET} + 1)
        fail(section_, "string section would grow past " + hex(BTF_MAX_NAME_OFFSET));
    const auto offset = static_cast<uint32_t>(strings_.size());
    caches_.reset(); // its views into strings_ may move
    strings_.append(s);
    strings_.push_back('\0');
    return offset;
}

std::string_view Btf::name(uint32_t id) const
{
    return string(type(id).name_off);
}

std::string Btf::label(uint32_t id) const
{
    return label_of(id, type(id), strings_);
}

std::optional<uint32_t> Btf::find(uint32_t kind, std::string_view wanted) const
{
    if (!caches_.names_built) {
        caches_.first.clear();
        caches_.long_names.clear();
        for (uint32_t id = 1; id < types_.size(); ++id) {
            const auto& t = types_[id];
            if (t.name_off == 0 || t.name_off >= strings_.size())
                continue;
            if (const auto n = bounded_string(strings_, t.name_off, kMaxName))
                caches_.first.try_emplace(NameKey{*n, t.kind}, id); // ids ascend: the first stays
            else
                caches_.long_names.push_back(id);
        }
        caches_.names_built = true;
    }
    if (wanted.size() > kMaxName) {
        for (const uint32_t id : caches_.long_names)
            if (types_[id].kind == kind && string_in(strings_, types_[id].name_off) == wanted)
                return id;
        return std::nullopt;
    }
    const auto it = caches_.first.find(NameKey{wanted, kind});
    if (it == caches_.first.end())
        return std::nullopt;
    return it->second;
}

uint32_t Btf::resolve(uint32_t id) const
{
    (void)type(id);
    auto& memo = caches_.resolved;
    if (memo.size() != types_.size())
        memo.assign(types_.size(), kUnresolved);
    // Walk to the first type already resolved or not a modifier; every type passed resolves to the same.
    std::vector<uint32_t> path;
    uint32_t cur = id;
    while (memo[cur] == kUnresolved && is_modifier(types_[cur].kind)) {
        if (path.size() == types_.size())
            fail(section_, label(id) + ": a loop of modifiers and typedefs");
        path.push_back(cur);
        cur = types_[cur].size_or_type;
        (void)type(cur);
    }
    const uint32_t result = memo[cur] != kUnresolved ? memo[cur] : cur;
    memo[cur] = result;
    for (const uint32_t p : path)
        memo[p] = result;
    return result;
}

uint32_t Btf::type_size(uint32_t id) const
{
    (void)type(id);
    auto& memo = caches_.sizes;
    if (memo.size() != types_.size())
        memo.assign(types_.size(), SizeMemo{});
    // Walk down to a type whose size is known or has its own, then give the types passed theirs, bottom up.
    std::vector<uint32_t> path;
    uint32_t cur = id;
    SizeMemo m;
    while (true) {
        if (memo[cur].state != SizeMemo::kUnknown) {
            m = memo[cur];
            break;
        }
        const BtfType& t = types_[cur];
        switch (t.kind) {
        case BTF_KIND_INT:
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION:
        case BTF_KIND_ENUM:
        case BTF_KIND_ENUM64:
        case BTF_KIND_DATASEC:
        case BTF_KIND_FLOAT:
            m = {t.size_or_type, 0, SizeMemo::kSized};
            break;
        case BTF_KIND_PTR:
            m = {kPointerSize, 0, SizeMemo::kSized};
            break;
        case BTF_KIND_TYPEDEF:
        case BTF_KIND_VOLATILE:
        case BTF_KIND_CONST:
        case BTF_KIND_RESTRICT:
        case BTF_KIND_VAR:
        case BTF_KIND_DECL_TAG:
        case BTF_KIND_TYPE_TAG:
        case BTF_KIND_ARRAY:
            if (path.size() == types_.size())
                fail(section_, label(id) + ": a loop of types by value");
            path.push_back(cur);
            cur = t.kind == BTF_KIND_ARRAY ? t.array.type : t.size_or_type;
            (void)type(cur);
            continue;
        default: // void, FWD, FUNC, FUNC_PROTO
            m = {0, cur, SizeMemo::kNoSize};
            break;
        }
        memo[cur] = m;
        break;
    }
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
        const BtfType& t = types_[*it];
        if (t.kind == BTF_KIND_ARRAY && m.state != SizeMemo::kNoSize) {
            // No elements: size 0, however large one would be (libbpf's nelems * size).
            if (t.array.nelems == 0) {
                m = {0, 0, SizeMemo::kSized};
            } else if (m.state == SizeMemo::kSized) {
                const uint64_t size = uint64_t{m.size} * t.array.nelems;
                m = size > std::numeric_limits<uint32_t>::max()
                        ? SizeMemo{0, 0, SizeMemo::kTooLarge}
                        : SizeMemo{static_cast<uint32_t>(size), 0, SizeMemo::kSized};
            }
        }
        memo[*it] = m;
    }
    switch (m.state) {
    case SizeMemo::kSized:
        return m.size;
    case SizeMemo::kTooLarge:
        fail(section_,
             label(id) + ": size of more than " + std::to_string(std::numeric_limits<uint32_t>::max()) + " bytes");
    default:
        fail(section_, label(id) + ": " +
                           (m.culprit == id ? std::string("has no size")
                                            : "has no size (it is made of " + label(m.culprit) + ")"));
    }
}

std::optional<BtfMemberRef> Btf::find_member(uint32_t id, std::string_view wanted) const
{
    const uint32_t root = resolve(id);
    if (!is_composite(type(root).kind))
        fail(section_, label(id) + ": is no STRUCT or UNION");
    struct Frame {
        uint32_t id;
        size_t next;
        uint32_t base;
    };
    std::vector<Frame> stack{{root, 0, 0}};
    // Anonymous members may share types (a DAG): each type is searched once, which keeps the search linear.
    std::unordered_set<uint32_t> searched{root};
    while (!stack.empty()) {
        Frame& f = stack.back();
        const BtfType& t = types_[f.id];
        if (f.next == t.members.size()) {
            stack.pop_back();
            continue;
        }
        const size_t i = f.next++;
        const uint32_t offset = f.base + t.member_bit_offset(i);
        const auto member_name = string(t.members[i].name_off);
        if (member_name == wanted)
            return BtfMemberRef{f.id, i, offset};
        if (!member_name.empty())
            continue;
        const uint32_t inner = resolve(t.members[i].type);
        // Pushed once per type at most: even a loop a caller built after parsing ends.
        if (is_composite(type(inner).kind) && searched.insert(inner).second)
            stack.push_back({inner, 0, offset});
    }
    return std::nullopt;
}

// --- parse_btf -------------------------------------------------------------------------------------------------

Btf parse_btf(std::span<const std::byte> bytes, std::string_view section)
{
    if (bytes.size() < sizeof(btf_header))
        fail(section, "header is truncated (" + std::to_string(bytes.size()) + " bytes, it takes " +
                          std::to_string(sizeof(btf_header)) + ")");
    const auto hdr = read_at<btf_header>(bytes, 0, section, "header");
    if (hdr.magic == __builtin_bswap16(static_cast<uint16_t>(BTF_MAGIC)))
        fail(section, "magic " + hex(hdr.magic) + " is byte-swapped: big-endian BTF is not supported");
    if (hdr.magic != BTF_MAGIC)
        fail(section, "bad magic " + hex(hdr.magic) + " (expected " + hex(BTF_MAGIC) + ")");
    if (hdr.version != BTF_VERSION)
        fail(section, "version " + std::to_string(hdr.version) + " is not supported (expected " +
                          std::to_string(BTF_VERSION) + ")");
    if (hdr.flags != 0)
        fail(section, "header flags " + hex(hdr.flags) + " are not supported");
    if (hdr.hdr_len < sizeof(btf_header))
        fail(section,
             "header length " + std::to_string(hdr.hdr_len) + " is shorter than " + std::to_string(sizeof(btf_header)));
    if (hdr.hdr_len > bytes.size())
        fail(section, "header length " + std::to_string(hdr.hdr_len) + " is past the end of the section (" +
                          std::to_string(bytes.size()) + " bytes)");
    // A longer header from a newer format: the kernel accepts it only when the fields it does not know are zero.
    for (size_t i = sizeof(btf_header); i < hdr.hdr_len; ++i)
        if (bytes[i] != std::byte{0})
            fail(section, "header byte " + std::to_string(i) + " past the known fields is not zero");
    const auto body = bytes.subspan(hdr.hdr_len);
    const Range types_range{hdr.type_off, hdr.type_len};
    const Range strings_range{hdr.str_off, hdr.str_len};
    if (hdr.type_off % 4 != 0)
        fail(section, "type section offset " + std::to_string(hdr.type_off) + " is not 4-byte aligned");
    for (const auto& [name, r] : {std::pair{"type", types_range}, std::pair{"string", strings_range}})
        if (r.off > body.size() || body.size() - r.off < r.len)
            fail(section, std::string(name) + " section " + range_text(r) + " lies past the end of the section (" +
                              std::to_string(body.size()) + " bytes after the header)");
    if (types_range.len != 0 && strings_range.len != 0 && types_range.off < strings_range.off + strings_range.len &&
        strings_range.off < types_range.off + types_range.len)
        fail(section, "type section " + range_text(types_range) + " and string section " + range_text(strings_range) +
                          " overlap");

    Btf btf{std::string(section)};
    std::string strings;
    {
        const auto s = body.subspan(hdr.str_off, hdr.str_len);
        if (s.empty())
            fail(section, "string section is empty (it holds at least the empty name)");
        if (s.front() != std::byte{0})
            fail(section, "string section does not start with NUL (the empty name)");
        if (s.back() != std::byte{0})
            fail(section, "string section does not end with NUL");
        if (s.size() - 1 > BTF_MAX_NAME_OFFSET)
            fail(section, "string section of " + std::to_string(s.size()) + " bytes is larger than the kernel's " +
                              hex(uint64_t{BTF_MAX_NAME_OFFSET} + 1));
        strings.assign(reinterpret_cast<const char*>(s.data()), s.size());
    }

    std::vector<BtfType> types(1); // [0] is void
    Parser p{section, types, strings};
    const auto sec = body.subspan(hdr.type_off, hdr.type_len);
    // The smallest type takes 12 bytes, which bounds the reservation by the input.
    types.reserve(sec.size() / sizeof(btf_type) + 1);
    for (size_t pos = 0; pos < sec.size();) {
        const auto id = static_cast<uint32_t>(types.size());
        if (id > BTF_MAX_TYPE)
            fail(section, "more than " + std::to_string(BTF_MAX_TYPE) + " types");
        pos += p.read_type(sec, pos, id);
    }
    for (uint32_t id = 1; id < types.size(); ++id)
        p.check_refs(id);
    for (uint32_t id = 1; id < types.size(); ++id)
        p.check_targets(id);
    p.check_loops();

    btf.types_ = std::move(types);
    btf.strings_ = std::move(strings);
    return btf;
}

// --- encode ----------------------------------------------------------------------------------------------------

std::vector<std::byte> encode(const Btf& btf)
{
    const auto& strings = btf.strings();
    const auto& types = btf.types();
    if (strings.empty() || strings.front() != '\0')
        fail(btf.section(), "string section does not start with NUL");
    if (strings.back() != '\0')
        fail(btf.section(), "string section does not end with NUL");
    std::vector<std::byte> out(sizeof(btf_header));
    for (uint32_t id = 1; id < types.size(); ++id) {
        const BtfType& t = types[id];
        const auto check_vlen = [&](size_t n, const char* what) {
            if (n != t.vlen)
                fail(btf.section(),
                     btf.label(id) + ": vlen " + std::to_string(t.vlen) + ", but " + std::to_string(n) + " " + what);
        };
        if (t.kind == BTF_KIND_UNKN || t.kind > BTF_KIND_MAX)
            fail(btf.section(), "type [" + std::to_string(id) + "]: unknown kind " + std::to_string(t.kind));
        btf_type raw{};
        raw.name_off = t.name_off;
        raw.info = (t.kflag ? 1u << 31 : 0u) | t.kind << 24 | t.vlen;
        raw.size = t.size_or_type;
        append(out, raw);
        switch (t.kind) {
        case BTF_KIND_INT:
            append(out, t.int_data);
            break;
        case BTF_KIND_VAR:
            append(out, btf_var{t.linkage});
            break;
        case BTF_KIND_DECL_TAG:
            append(out, btf_decl_tag{t.component_idx});
            break;
        case BTF_KIND_ARRAY:
            append(out, btf_array{t.array.type, t.array.index_type, t.array.nelems});
            break;
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION:
            check_vlen(t.members.size(), "members");
            for (const auto& m : t.members)
                append(out, btf_member{m.name_off, m.type, m.offset});
            break;
        case BTF_KIND_ENUM:
            check_vlen(t.enum_values.size(), "values");
            for (const auto& e : t.enum_values)
                append(out, btf_enum{e.name_off, static_cast<__s32>(static_cast<uint32_t>(e.value))});
            break;
        case BTF_KIND_ENUM64:
            check_vlen(t.enum_values.size(), "values");
            for (const auto& e : t.enum_values)
                append(out,
                       btf_enum64{e.name_off, static_cast<uint32_t>(e.value), static_cast<uint32_t>(e.value >> 32)});
            break;
        case BTF_KIND_FUNC_PROTO:
            check_vlen(t.params.size(), "params");
            for (const auto& p : t.params)
                append(out, btf_param{p.name_off, p.type});
            break;
        case BTF_KIND_DATASEC:
            check_vlen(t.vars.size(), "vars");
            for (const auto& v : t.vars)
                append(out, btf_var_secinfo{v.type, v.offset, v.size});
            break;
        default:
            break;
        }
    }
    const uint64_t type_len = out.size() - sizeof(btf_header);
    if (type_len + strings.size() > std::numeric_limits<uint32_t>::max())
        fail(btf.section(),
             "types and strings of " + std::to_string(type_len + strings.size()) + " bytes do not fit a 32-bit header");
    btf_header h{};
    h.magic = BTF_MAGIC;
    h.version = BTF_VERSION;
    h.flags = 0;
    h.hdr_len = sizeof(btf_header);
    h.type_off = 0;
    h.type_len = static_cast<uint32_t>(type_len);
    h.str_off = h.type_len;
    h.str_len = static_cast<uint32_t>(strings.size());
    std::memcpy(out.data(), &h, sizeof h);
    const size_t at = out.size();
    out.resize(at + strings.size());
    std::memcpy(out.data() + at, strings.data(), strings.size());
    return out;
}

// --- fix-ups -----------------------------------------------------------------------------------------------------

void fixup_datasecs(Btf& btf, const std::function<std::optional<uint64_t>(std::string_view section)>& section_size,
                    const std::function<std::optional<BtfVarSymbol>(std::string_view var)>& symbol)
{
    constexpr uint64_t kMax = std::numeric_limits<uint32_t>::max();
    for (uint32_t id = 1; id < btf.types().size(); ++id) {
        if (btf.types()[id].kind != BTF_KIND_DATASEC)
            continue;
        const std::string sec_name(btf.name(id));
        const auto what = "DATASEC " + quoted(sec_name);
        // Extern-backing sections: libbpf set their sizes and offsets when it collected the externs.
        const bool externs = sec_name == ".kconfig" || sec_name == ".ksyms";
        bool fix_offsets = false;
        if (!externs && btf.types()[id].size_or_type == 0) {
            const auto size = section_size(sec_name);
            if (!size || *size == 0)
                fail(btf.section(), what + ": no ELF section " + quoted(sec_name) + " gives its size");
            if (*size > kMax)
                fail(btf.section(), what + ": ELF section size " + std::to_string(*size) + " does not fit 32 bits");
            btf.mutable_type(id).size_or_type = static_cast<uint32_t>(*size);
            fix_offsets = true;
        }
        if (!externs) {
            for (size_t i = 0; i < btf.types()[id].vars.size(); ++i) {
                const uint32_t var_id = btf.types()[id].vars[i].type;
                const BtfType& var = btf.type(var_id);
                if (var.kind != BTF_KIND_VAR)
                    fail(btf.section(),
                         what + ": entry #" + std::to_string(i) + " is " + btf.label(var_id) + ", not a VAR");
                if (var.linkage == BTF_VAR_STATIC || var.linkage == BTF_VAR_GLOBAL_EXTERN)
                    continue;
                const std::string var_name(btf.name(var_id));
                const auto sym = symbol(var_name);
                if (!sym)
                    fail(btf.section(), what + ": no ELF symbol for VAR " + quoted(var_name));
                if (fix_offsets) {
                    if (sym->offset > kMax)
                        fail(btf.section(), what + ": VAR " + quoted(var_name) + ": symbol offset " +
                                                std::to_string(sym->offset) + " does not fit 32 bits");
                    btf.mutable_type(id).vars[i].offset = static_cast<uint32_t>(sym->offset);
                }
                if (sym->hidden)
                    btf.mutable_type(var_id).linkage = BTF_VAR_STATIC;
            }
        }
        auto& vars = btf.mutable_type(id).vars;
        std::stable_sort(vars.begin(), vars.end(),
                         [](const BtfVarSecinfo& a, const BtfVarSecinfo& b) { return a.offset < b.offset; });
    }
}

void fixup_datasecs(Btf& btf, const ElfFile& file)
{
    std::unordered_map<std::string_view, uint64_t> sizes;
    for (const auto& s : file.sections)
        sizes.emplace(s.name, s.size); // the first of a name, as find_section
    std::unordered_map<std::string_view, BtfVarSymbol> symbols;
    for (const auto& sym : file.symbols) {
        if (sym.type != STT_OBJECT || (sym.bind != STB_GLOBAL && sym.bind != STB_WEAK))
            continue;
        symbols.emplace(sym.name,
                        BtfVarSymbol{sym.value, sym.visibility == STV_HIDDEN || sym.visibility == STV_INTERNAL});
    }
    fixup_datasecs(
        btf,
        [&](std::string_view name) -> std::optional<uint64_t> {
            const auto it = sizes.find(name);
            return it == sizes.end() ? std::nullopt : std::optional<uint64_t>(it->second);
        },
        [&](std::string_view name) -> std::optional<BtfVarSymbol> {
            const auto it = symbols.find(name);
            return it == symbols.end() ? std::nullopt : std::optional<BtfVarSymbol>(it->second);
        });
}

// --- sanitize ----------------------------------------------------------------------------------------------------

namespace {

// An INT of `size` bytes with int data `bits` bits, encoding none: what libbpf leaves of a VAR or a DECL_TAG.
BtfType dummy_int(uint32_t name_off, uint32_t size, uint32_t bits)
{
    BtfType t;
    t.kind = BTF_KIND_INT;
    t.name_off = name_off;
    t.size_or_type = size;
    t.int_data = bits;
    return t;
}

} // namespace

void sanitize(Btf& btf, const BtfKernelSupport& kernel)
{
    uint32_t enum64_placeholder = 0;
    const size_t count = btf.types().size(); // the placeholder added below needs no sanitizing
    for (uint32_t id = 1; id < count; ++id) {
        const BtfType& t = btf.types()[id];
        if ((!kernel.datasec && t.kind == BTF_KIND_VAR) || (!kernel.decl_tag && t.kind == BTF_KIND_DECL_TAG)) {
            // Size 1: the safest size; 4 would fail the kernel's checks for a variable of fewer bytes.
            btf.mutable_type(id) = dummy_int(t.name_off, 1, 8);
        } else if (!kernel.datasec && t.kind == BTF_KIND_DATASEC) {
            BtfType s;
            s.kind = BTF_KIND_STRUCT;
            s.name_off = t.name_off;
            s.size_or_type = t.size_or_type;
            s.vlen = t.vlen;
            for (size_t i = 0; i < t.vars.size(); ++i) {
                const auto& v = t.vars[i];
                if (v.offset > std::numeric_limits<uint32_t>::max() / 8)
                    fail(btf.section(), btf.label(id) + ": var #" + std::to_string(i) + " offset " +
                                            std::to_string(v.offset) + " is too large for a STRUCT member");
                // The member keeps the variable's name.
                s.members.push_back({btf.type(v.type).name_off, v.type, v.offset * 8});
            }
            // The kernel refuses '.' and '?' in a STRUCT name; libbpf edits the string in place.
            auto& strings = btf.mutable_strings();
            for (size_t i = s.name_off; i < strings.size() && strings[i] != '\0'; ++i)
                if (strings[i] == '.' || strings[i] == '?')
                    strings[i] = '_';
            btf.mutable_type(id) = std::move(s);
        } else if (!kernel.qmark_datasec && t.kind == BTF_KIND_DATASEC) {
            auto& strings = btf.mutable_strings();
            if (t.name_off < strings.size() && strings[t.name_off] == '?')
                strings[t.name_off] = '_';
        } else if (!kernel.func && t.kind == BTF_KIND_FUNC_PROTO) {
            BtfType e;
            e.kind = BTF_KIND_ENUM;
            e.name_off = t.name_off;
            e.vlen = t.vlen;
            e.size_or_type = sizeof(uint32_t); // the kernel's only ENUM size then
            for (const auto& p : t.params)
                e.enum_values.push_back({p.name_off, p.type});
            btf.mutable_type(id) = std::move(e);
        } else if (!kernel.func && t.kind == BTF_KIND_FUNC) {
            BtfType d;
            d.kind = BTF_KIND_TYPEDEF;
            d.name_off = t.name_off;
            d.size_or_type = t.size_or_type;
            btf.mutable_type(id) = std::move(d);
        } else if (!kernel.func_global && t.kind == BTF_KIND_FUNC) {
            btf.mutable_type(id).vlen = BTF_FUNC_STATIC;
        } else if (!kernel.float_ && t.kind == BTF_KIND_FLOAT) {
            // Anonymous: C compilers would not accept "float" as a struct name.
            BtfType s;
            s.kind = BTF_KIND_STRUCT;
            s.size_or_type = t.size_or_type;
            btf.mutable_type(id) = std::move(s);
        } else if (!kernel.type_tag && t.kind == BTF_KIND_TYPE_TAG) {
            BtfType c;
            c.kind = BTF_KIND_CONST;
            c.size_or_type = t.size_or_type;
            btf.mutable_type(id) = std::move(c);
        } else if (!kernel.enum64 && t.kind == BTF_KIND_ENUM) {
            btf.mutable_type(id).kflag = false; // ENUM's signedness came with ENUM64
        } else if (!kernel.enum64 && t.kind == BTF_KIND_ENUM64) {
            if (enum64_placeholder == 0)
                enum64_placeholder = btf.add_type(dummy_int(btf.add_string("enum64_placeholder"), 1, 8));
            const BtfType& e = btf.types()[id]; // add_type may have moved the types
            BtfType u;
            u.kind = BTF_KIND_UNION;
            u.name_off = e.name_off;
            u.vlen = e.vlen;
            u.size_or_type = e.size_or_type;
            for (const auto& v : e.enum_values)
                u.members.push_back({v.name_off, enum64_placeholder, 0});
            btf.mutable_type(id) = std::move(u);
        }
    }
}

std::vector<std::byte> encode_for_kernel(const Btf& btf, const BtfKernelSupport& kernel)
{
    if (kernel.all())
        return encode(btf);
    Btf copy = btf;
    sanitize(copy, kernel);
    return encode(copy);
}

// --- BTF-defined maps --------------------------------------------------------------------------------------------

namespace {

struct MapDefParser {
    const Btf& btf;

    [[noreturn]] void fail_map(const std::string& map, const std::string& what) const
    {
        fail(btf.section(), "map " + quoted(map) + ": " + what);
    }

    std::string kind_of(uint32_t id) const { return btf_kind_name(btf.type(id).kind); }

    // __uint(name, N): int (*name)[N], a pointer (through modifiers) to an ARRAY of N elements.
    uint32_t field_int(const std::string& map, const std::string& attr, uint32_t member_type) const
    {
        const uint32_t ptr = btf.resolve(member_type);
        if (btf.type(ptr).kind != BTF_KIND_PTR)
            fail_map(map, "attr " + quoted(attr) + ": expected PTR, got " + kind_of(ptr));
        const uint32_t arr = btf.type(ptr).size_or_type;
        if (btf.type(arr).kind != BTF_KIND_ARRAY)
            fail_map(map, "attr " + quoted(attr) + ": expected ARRAY, got " + kind_of(arr));
        return btf.type(arr).array.nelems;
    }

    // __uint as above, or __ulong(name, N): an ENUM or ENUM64 of one value N.
    uint64_t field_long(const std::string& map, const std::string& attr, uint32_t member_type) const
    {
        const uint32_t id = btf.resolve(member_type);
        const BtfType& t = btf.type(id);
        if (t.kind == BTF_KIND_PTR)
            return field_int(map, attr, member_type);
        if (t.kind != BTF_KIND_ENUM && t.kind != BTF_KIND_ENUM64)
            fail_map(map, "attr " + quoted(attr) + ": expected ENUM or ENUM64, got " + kind_of(id));
        if (t.enum_values.size() != 1)
            fail_map(map, "attr " + quoted(attr) + ": " + std::to_string(t.enum_values.size()) +
                              " enum values, expected one");
        return t.enum_values[0].value;
    }

    // __type(name, T): T *name. Returns T's id and sets `size` to T's size, which must agree with a given size.
    uint32_t field_type(const std::string& map, const std::string& attr, uint32_t member_type, uint32_t& size) const
    {
        if (btf.type(member_type).kind != BTF_KIND_PTR)
            fail_map(map, attr + " spec is not PTR: " + kind_of(member_type));
        const uint32_t target = btf.type(member_type).size_or_type;
        uint32_t sz = 0;
        try {
            sz = btf.type_size(target);
        } catch (const Error& e) {
            // type_size's message without its "section '.BTF': ", which fail_map puts first again.
            const std::string prefix = "section " + quoted(btf.section()) + ": ";
            std::string why = e.what();
            if (why.rfind(prefix, 0) == 0)
                why.erase(0, prefix.size());
            fail_map(map, "cannot determine " + attr + " size: " + why);
        }
        check_size(map, attr, size, sz);
        size = sz;
        return target;
    }

    void check_size(const std::string& map, const std::string& attr, uint32_t have, uint32_t got) const
    {
        if (have != 0 && have != got)
            fail_map(map, "conflicting " + attr + " size " + std::to_string(have) + " != " + std::to_string(got));
    }

    BtfMapDef parse(const std::string& map, uint32_t def_id, bool inner) const
    {
        const uint32_t def = btf.resolve(def_id);
        if (btf.type(def).kind != BTF_KIND_STRUCT)
            fail_map(map, "unexpected def kind " + kind_of(def) + " (expected STRUCT)");
        const auto& members = btf.type(def).members;
        BtfMapDef out;
        out.name = map;
        for (size_t i = 0; i < members.size(); ++i) {
            const auto& m = members[i];
            const std::string name(btf.string(m.name_off));
            if (name.empty())
                fail_map(map, "member #" + std::to_string(i) + " has no name");
            if (name == "type") {
                out.type = field_int(map, name, m.type);
            } else if (name == "max_entries") {
                out.max_entries = field_int(map, name, m.type);
            } else if (name == "map_flags") {
                out.map_flags = field_int(map, name, m.type);
            } else if (name == "numa_node") {
                out.numa_node = field_int(map, name, m.type);
            } else if (name == "key_size") {
                const uint32_t sz = field_int(map, name, m.type);
                check_size(map, "key", out.key_size, sz);
                out.key_size = sz;
            } else if (name == "value_size") {
                const uint32_t sz = field_int(map, name, m.type);
                check_size(map, "value", out.value_size, sz);
                out.value_size = sz;
            } else if (name == "key") {
                out.key_type_id = field_type(map, "key", m.type, out.key_size);
            } else if (name == "value") {
                out.value_type_id = field_type(map, "value", m.type, out.value_size);
            } else if (name == "values") {
                parse_values(map, out, inner, i + 1 == members.size(), m.type);
            } else if (name == "pinning") {
                if (inner)
                    fail_map(map, "inner def can't be pinned");
                out.pinning = field_int(map, name, m.type);
                if (out.pinning != kBtfPinNone && out.pinning != kBtfPinByName)
                    fail_map(map, "invalid pinning value " + std::to_string(out.pinning));
            } else if (name == "map_extra") {
                out.map_extra = field_long(map, name, m.type);
            } else {
                // libbpf's strict mode, its default: a member it does not know is an error, not ignored.
                fail_map(map, "unknown field " + quoted(name));
            }
        }
        if (out.type == BPF_MAP_TYPE_UNSPEC)
            fail_map(map, "map type isn't specified");
        return out;
    }

    // __array(values, T): T *values[], a zero-sized ARRAY of PTR to a map definition (map-in-map) or to a
    // FUNC_PROTO (prog array).
    void parse_values(const std::string& map, BtfMapDef& out, bool inner, bool last, uint32_t member_type) const
    {
        const bool map_in_map = out.type == BPF_MAP_TYPE_ARRAY_OF_MAPS || out.type == BPF_MAP_TYPE_HASH_OF_MAPS;
        const bool prog_array = out.type == BPF_MAP_TYPE_PROG_ARRAY;
        const std::string desc = map_in_map ? "map-in-map inner" : "prog-array value";
        if (inner)
            fail_map(map, "multi-level inner maps not supported");
        if (!last)
            fail_map(map, "'values' member should be last");
        if (!map_in_map && !prog_array)
            fail_map(map, "should be map-in-map or prog-array");
        if (out.value_size != 0 && out.value_size != 4)
            fail_map(map, "conflicting value size " + std::to_string(out.value_size) + " != 4");
        out.value_size = 4;
        out.has_values = true;
        const BtfType& arr = btf.type(member_type);
        if (arr.kind != BTF_KIND_ARRAY || arr.array.nelems != 0)
            fail_map(map, desc + " spec is not a zero-sized array");
        const uint32_t ptr = btf.resolve(arr.array.type);
        if (btf.type(ptr).kind != BTF_KIND_PTR)
            fail_map(map, desc + " def is of unexpected kind " + kind_of(ptr));
        const uint32_t target = btf.resolve(btf.type(ptr).size_or_type);
        if (prog_array) {
            if (btf.type(target).kind != BTF_KIND_FUNC_PROTO)
                fail_map(map, "prog-array value def is of unexpected kind " + kind_of(target));
            return;
        }
        if (btf.type(target).kind != BTF_KIND_STRUCT)
            fail_map(map, "map-in-map inner def is of unexpected kind " + kind_of(target));
        out.inner.push_back(parse(map + ".inner", target, true));
    }
};

} // namespace

BtfMapDef parse_btf_map_def(const Btf& btf, uint32_t var_type_id)
{
    const BtfType& var = btf.type(var_type_id);
    const std::string name(btf.name(var_type_id));
    if (var.kind != BTF_KIND_VAR)
        fail(btf.section(), btf.label(var_type_id) + ": a map definition is a VAR");
    if (name.empty())
        fail(btf.section(), btf.label(var_type_id) + ": map has no name");
    const MapDefParser p{btf};
    if (var.linkage != BTF_VAR_GLOBAL_ALLOCATED)
        p.fail_map(name, "unsupported map linkage " + std::string(var.linkage == BTF_VAR_STATIC ? "static" : "extern") +
                             " (a map is a global definition)");
    return p.parse(name, var.size_or_type, false);
}

std::vector<BtfMapDef> parse_btf_maps(const Btf& btf, std::string_view section)
{
    std::vector<BtfMapDef> out;
    const auto sec = btf.find(BTF_KIND_DATASEC, section);
    if (!sec)
        return out;
    for (const auto& v : btf.type(*sec).vars) {
        auto def = parse_btf_map_def(btf, v.type);
        const uint32_t def_size = btf.type(btf.resolve(btf.type(v.type).size_or_type)).size_or_type;
        if (v.size != 0 && def_size > v.size)
            fail(btf.section(), "map " + quoted(def.name) + ": definition of " + std::to_string(def_size) +
                                    " bytes is larger than its DATASEC entry (" + std::to_string(v.size) + " bytes)");
        out.push_back(std::move(def));
    }
    return out;
}

// --- .BTF.ext ----------------------------------------------------------------------------------------------------

namespace {

const char* core_relo_kind_name(uint32_t kind)
{
    static constexpr std::array<const char*, BPF_CORE_TYPE_MATCHES + 1> kNames = {
        "FIELD_BYTE_OFFSET", "FIELD_BYTE_SIZE", "FIELD_EXISTS",   "FIELD_SIGNED", "FIELD_LSHIFT_U64",
        "FIELD_RSHIFT_U64",  "TYPE_ID_LOCAL",   "TYPE_ID_TARGET", "TYPE_EXISTS",  "TYPE_SIZE",
        "ENUMVAL_EXISTS",    "ENUMVAL_VALUE",   "TYPE_MATCHES"};
    return kind < kNames.size() ? kNames[kind] : "unknown";
}

bool core_relo_is_type_based(uint32_t kind)
{
    return kind == BPF_CORE_TYPE_ID_LOCAL || kind == BPF_CORE_TYPE_ID_TARGET || kind == BPF_CORE_TYPE_EXISTS ||
           kind == BPF_CORE_TYPE_SIZE || kind == BPF_CORE_TYPE_MATCHES;
}

bool core_relo_is_enumval_based(uint32_t kind)
{
    return kind == BPF_CORE_ENUMVAL_EXISTS || kind == BPF_CORE_ENUMVAL_VALUE;
}

// "0:1:2" -> {0, 1, 2}: decimal indices (each fitting an int, as libbpf reads them with %d) joined by single ':'.
std::optional<std::vector<uint32_t>> parse_access(std::string_view s)
{
    std::vector<uint32_t> out;
    size_t i = 0;
    while (true) {
        if (i == s.size() || s[i] < '0' || s[i] > '9')
            return std::nullopt;
        uint64_t v = 0;
        for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
            v = v * 10 + static_cast<uint64_t>(s[i] - '0');
            if (v > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
                return std::nullopt;
        }
        if (out.size() == kCoreSpecMaxLen)
            return std::nullopt;
        out.push_back(static_cast<uint32_t>(v));
        if (i == s.size())
            return out;
        if (s[i] != ':')
            return std::nullopt;
        ++i;
    }
}

struct ExtParser {
    std::span<const std::byte> body; // after the header
    const Btf& btf;
    std::string_view section;

    [[noreturn]] void fail_at(const std::string& where, const std::string& what) const
    {
        fail(section, where + ": " + what);
    }

    std::string type_count() const { return std::to_string(btf.types().size() - 1); }

    bool valid_string(uint32_t off) const { return off < btf.strings().size(); }

    template <typename Record, typename Read>
    void parse(const char* sub, Range r, size_t min_size, uint32_t& rec_size, std::vector<BtfExtSection<Record>>& out,
               const Read& read) const
    {
        if (r.len == 0)
            return;
        const std::string name = sub;
        if (r.off % 4 != 0)
            fail_at(name, "offset " + std::to_string(r.off) + " is not 4-byte aligned");
        if (r.off > body.size() || body.size() - r.off < r.len)
            fail_at(name, range_text(r) + " lies past the end of the section (" + std::to_string(body.size()) +
                              " bytes after the header)");
        const auto data = body.subspan(r.off, r.len);
        if (data.size() < sizeof(uint32_t))
            fail_at(name, "no record size (" + std::to_string(data.size()) + " bytes)");
        rec_size = read_at<uint32_t>(data, 0, section, name);
        if (rec_size < min_size)
            fail_at(name, "record size " + std::to_string(rec_size) + " is smaller than " + std::to_string(min_size));
        if (rec_size % 4 != 0)
            fail_at(name, "record size " + std::to_string(rec_size) + " is not a multiple of 4");
        size_t pos = sizeof(uint32_t);
        if (pos == data.size())
            fail_at(name, "no records");
        std::unordered_map<std::string, size_t> index;
        for (size_t n = 0; pos < data.size(); ++n) {
            const auto entry = name + ": section entry #" + std::to_string(n);
            if (data.size() - pos < sizeof(BtfExtInfoSec))
                fail_at(entry, "truncated (" + std::to_string(data.size() - pos) + " bytes left, an entry takes " +
                                   std::to_string(sizeof(BtfExtInfoSec)) + ")");
            const auto sec = read_at<BtfExtInfoSec>(data, pos, section, entry);
            pos += sizeof(BtfExtInfoSec);
            if (!valid_string(sec.sec_name_off))
                fail_at(entry, "name offset " + hex(sec.sec_name_off) + " is outside the .BTF string section (" +
                                   std::to_string(btf.strings().size()) + " bytes)");
            const auto bounded = bounded_string(btf.strings(), sec.sec_name_off, kMaxExtString);
            if (!bounded)
                fail_at(entry, "section name is longer than " + std::to_string(kMaxExtString) + " bytes");
            const std::string sec_name(*bounded);
            if (sec_name.empty())
                fail_at(entry, "names no section");
            const auto where = name + ": section " + quoted(sec_name);
            if (sec.num_info == 0)
                fail_at(where, "no records");
            const uint64_t bytes = uint64_t{sec.num_info} * rec_size;
            if (bytes > data.size() - pos)
                fail_at(where, std::to_string(sec.num_info) + " records of " + std::to_string(rec_size) +
                                   " bytes lie past the end of " + name + " (" + std::to_string(data.size() - pos) +
                                   " bytes left)");
            auto [it, added] = index.emplace(sec_name, out.size());
            if (added)
                out.push_back({sec_name, {}});
            auto& records = out[it->second].records;
            records.reserve(records.size() + sec.num_info);
            for (uint32_t i = 0; i < sec.num_info; ++i) {
                const auto rec = where + ": record #" + std::to_string(i);
                Record record = read(data, pos + uint64_t{i} * rec_size, rec);
                if (record.insn_off % sizeof(bpf_insn) != 0)
                    fail_at(rec, "insn_off " + std::to_string(record.insn_off) + " is not a multiple of 8");
                records.push_back(std::move(record));
            }
            pos += bytes;
        }
    }

    BtfFuncInfo func_info(std::span<const std::byte> data, uint64_t at, const std::string& rec) const
    {
        const auto raw = read_at<bpf_func_info>(data, at, section, rec);
        if (raw.type_id >= btf.types().size())
            fail_at(rec, "type " + std::to_string(raw.type_id) + " of " + type_count() + " does not exist");
        if (btf.type(raw.type_id).kind != BTF_KIND_FUNC)
            fail_at(rec, btf.label(raw.type_id) + " is not a FUNC");
        return {raw.insn_off, raw.type_id};
    }

    BtfLineInfo line_info(std::span<const std::byte> data, uint64_t at, const std::string& rec) const
    {
        const auto raw = read_at<bpf_line_info>(data, at, section, rec);
        if (!valid_string(raw.file_name_off))
            fail_at(rec, "file name offset " + hex(raw.file_name_off) + " is outside the .BTF string section (" +
                             std::to_string(btf.strings().size()) + " bytes)");
        if (!valid_string(raw.line_off))
            fail_at(rec, "line offset " + hex(raw.line_off) + " is outside the .BTF string section (" +
                             std::to_string(btf.strings().size()) + " bytes)");
        return {raw.insn_off, raw.file_name_off, raw.line_off, raw.line_col};
    }

    BtfCoreRelo core_relo(std::span<const std::byte> data, uint64_t at, const std::string& rec) const
    {
        const auto raw = read_at<CoreReloRecord>(data, at, section, rec);
        const uint32_t kind = raw.kind;
        if (raw.type_id >= btf.types().size())
            fail_at(rec, "type " + std::to_string(raw.type_id) + " of " + type_count() + " does not exist");
        if (kind > BPF_CORE_TYPE_MATCHES)
            fail_at(rec, "kind " + std::to_string(kind) + " is not a bpf_core_relo_kind (0 to " +
                             std::to_string(BPF_CORE_TYPE_MATCHES) + ")");
        if (!valid_string(raw.access_str_off))
            fail_at(rec, "access string offset " + hex(raw.access_str_off) + " is outside the .BTF string section (" +
                             std::to_string(btf.strings().size()) + " bytes)");
        BtfCoreRelo out;
        out.insn_off = raw.insn_off;
        out.type_id = raw.type_id;
        out.access_str_off = raw.access_str_off;
        out.kind = kind;
        const auto access = bounded_string(btf.strings(), raw.access_str_off, kMaxExtString);
        if (!access)
            fail_at(rec, "access string at offset " + hex(raw.access_str_off) + " is longer than " +
                             std::to_string(kMaxExtString) + " bytes");
        out.access = std::string(*access);
        auto accessors = parse_access(out.access);
        if (!accessors)
            fail_at(rec, "access string " + quoted(out.access) + " is not up to " + std::to_string(kCoreSpecMaxLen) +
                             " decimal indices joined by ':'");
        if (core_relo_is_type_based(kind) && out.access != "0")
            fail_at(rec,
                    std::string(core_relo_kind_name(kind)) + " access string " + quoted(out.access) + " is not \"0\"");
        if (core_relo_is_enumval_based(kind) && accessors->size() != 1)
            fail_at(rec, std::string(core_relo_kind_name(kind)) + " access string " + quoted(out.access) +
                             " is not one index");
        out.accessors = std::move(*accessors);
        return out;
    }
};

template <typename Record>
std::span<const Record> records_of(const std::vector<BtfExtSection<Record>>& sections, std::string_view name)
{
    for (const auto& s : sections)
        if (s.section == name)
            return s.records;
    return {};
}

} // namespace

std::span<const BtfFuncInfo> BtfExt::func_info_of(std::string_view section) const
{
    return records_of(func_info, section);
}

std::span<const BtfLineInfo> BtfExt::line_info_of(std::string_view section) const
{
    return records_of(line_info, section);
}

std::span<const BtfCoreRelo> BtfExt::core_relos_of(std::string_view section) const
{
    return records_of(core_relos, section);
}

BtfExt parse_btf_ext(std::span<const std::byte> bytes, const Btf& btf, std::string_view section)
{
    // magic, version, flags, hdr_len: what every version of the header starts with.
    constexpr size_t kPrefix = 8;
    if (bytes.size() < kPrefix)
        fail(section, "header is truncated (" + std::to_string(bytes.size()) + " bytes)");
    const auto prefix = read_at<std::array<uint32_t, 2>>(bytes, 0, section, "header");
    const auto magic = static_cast<uint16_t>(prefix[0] & 0xffff);
    const auto version = static_cast<uint8_t>(prefix[0] >> 16);
    const auto flags = static_cast<uint8_t>(prefix[0] >> 24);
    const uint32_t hdr_len = prefix[1];
    if (magic == __builtin_bswap16(static_cast<uint16_t>(BTF_MAGIC)))
        fail(section, "magic " + hex(magic) + " is byte-swapped: big-endian BTF is not supported");
    if (magic != BTF_MAGIC)
        fail(section, "bad magic " + hex(magic) + " (expected " + hex(BTF_MAGIC) + ")");
    if (version != BTF_VERSION)
        fail(section,
             "version " + std::to_string(version) + " is not supported (expected " + std::to_string(BTF_VERSION) + ")");
    if (flags != 0)
        fail(section, "header flags " + hex(flags) + " are not supported");
    if (hdr_len < sizeof(BtfExtHeader))
        fail(section, "header length " + std::to_string(hdr_len) + " is shorter than " +
                          std::to_string(sizeof(BtfExtHeader)) + " (func_info and line_info)");
    if (hdr_len > bytes.size())
        fail(section, "header length " + std::to_string(hdr_len) + " is past the end of the section (" +
                          std::to_string(bytes.size()) + " bytes)");
    const auto hdr = read_at<BtfExtHeader>(bytes, 0, section, "header");
    BtfExtCoreHeader core{};
    if (hdr_len >= sizeof(BtfExtHeader) + sizeof(BtfExtCoreHeader))
        core = read_at<BtfExtCoreHeader>(bytes, sizeof(BtfExtHeader), section, "header");

    const ExtParser p{bytes.subspan(hdr_len), btf, section};
    BtfExt ext;
    p.parse("func_info", {hdr.func_info_off, hdr.func_info_len}, sizeof(bpf_func_info), ext.func_info_rec_size,
            ext.func_info,
            [&](std::span<const std::byte> d, uint64_t at, const std::string& rec) { return p.func_info(d, at, rec); });
    p.parse("line_info", {hdr.line_info_off, hdr.line_info_len}, sizeof(bpf_line_info), ext.line_info_rec_size,
            ext.line_info,
            [&](std::span<const std::byte> d, uint64_t at, const std::string& rec) { return p.line_info(d, at, rec); });
    p.parse("core_relo", {core.core_relo_off, core.core_relo_len}, sizeof(bpf_core_relo), ext.core_relo_rec_size,
            ext.core_relos,
            [&](std::span<const std::byte> d, uint64_t at, const std::string& rec) { return p.core_relo(d, at, rec); });
    return ext;
}

std::vector<bpf_func_info> program_func_info(const BtfExt& ext, std::string_view section, uint64_t program_offset,
                                             uint64_t program_size)
{
    std::vector<bpf_func_info> out;
    for (const auto& r : ext.func_info_of(section))
        if (r.insn_off >= program_offset && r.insn_off - program_offset < program_size)
            out.push_back({static_cast<uint32_t>((r.insn_off - program_offset) / sizeof(bpf_insn)), r.type_id});
    return out;
}

std::vector<bpf_line_info> program_line_info(const BtfExt& ext, std::string_view section, uint64_t program_offset,
                                             uint64_t program_size)
{
    std::vector<bpf_line_info> out;
    for (const auto& r : ext.line_info_of(section))
        if (r.insn_off >= program_offset && r.insn_off - program_offset < program_size)
            out.push_back({static_cast<uint32_t>((r.insn_off - program_offset) / sizeof(bpf_insn)), r.file_name_off,
                           r.line_off, r.line_col});
    return out;
}

} // namespace sockredir::elf
