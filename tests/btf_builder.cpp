// Test-only BTF and .BTF.ext blob builders: the words of <linux/btf.h>'s structs, written in order.
#include "tests/btf_builder.hpp"

#include <cstring>
#include <stdexcept>
#include <tuple>

namespace sockredir::test {

namespace {

void append_words(Bytes& out, const BtfWords& words)
{
    const size_t at = out.size();
    out.resize(at + words.size() * sizeof(uint32_t));
    if (!words.empty())
        std::memcpy(out.data() + at, words.data(), words.size() * sizeof(uint32_t));
}

template <typename T> void append_struct(Bytes& out, const T& value)
{
    const size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &value, sizeof(T));
}

} // namespace

BtfBuilder::BtfBuilder() : strings(1, '\0') {}

uint32_t BtfBuilder::add_string(std::string_view s)
{
    if (s.empty())
        return 0;
    std::string needle(1, '\0');
    needle.append(s);
    needle.push_back('\0');
    const auto at = strings.find(needle);
    if (at != std::string::npos)
        return static_cast<uint32_t>(at + 1);
    const auto offset = static_cast<uint32_t>(strings.size());
    strings.append(s);
    strings.push_back('\0');
    return offset;
}

uint32_t BtfBuilder::add_raw(BtfWords words)
{
    types_.push_back(std::move(words));
    return static_cast<uint32_t>(types_.size());
}

uint32_t BtfBuilder::add_int(std::string_view name, uint32_t size, uint32_t encoding, uint32_t bits, uint32_t offset)
{
    return add_raw({add_string(name), btf_info(BTF_KIND_INT, false, 0), size, encoding << 24 | offset << 16 | bits});
}

uint32_t BtfBuilder::add_ptr(uint32_t type)
{
    return add_raw({0, btf_info(BTF_KIND_PTR, false, 0), type});
}

uint32_t BtfBuilder::add_array(uint32_t elem, uint32_t index, uint32_t nelems)
{
    return add_raw({0, btf_info(BTF_KIND_ARRAY, false, 0), 0, elem, index, nelems});
}

uint32_t BtfBuilder::add_struct(std::string_view name, uint32_t size, const std::vector<Member>& members, bool kflag)
{
    BtfWords w{add_string(name), btf_info(BTF_KIND_STRUCT, kflag, static_cast<uint32_t>(members.size())), size};
    for (const auto& m : members)
        w.insert(w.end(), {add_string(m.name), m.type, m.offset});
    return add_raw(std::move(w));
}

uint32_t BtfBuilder::add_union(std::string_view name, uint32_t size, const std::vector<Member>& members, bool kflag)
{
    const uint32_t id = add_struct(name, size, members, kflag);
    words(id)[1] = btf_info(BTF_KIND_UNION, kflag, static_cast<uint32_t>(members.size()));
    return id;
}

uint32_t BtfBuilder::add_enum(std::string_view name, uint32_t size, const std::vector<Value>& values, bool is_signed)
{
    BtfWords w{add_string(name), btf_info(BTF_KIND_ENUM, is_signed, static_cast<uint32_t>(values.size())), size};
    for (const auto& v : values)
        w.insert(w.end(), {add_string(v.name), static_cast<uint32_t>(v.value)});
    return add_raw(std::move(w));
}

uint32_t BtfBuilder::add_enum64(std::string_view name, uint32_t size, const std::vector<Value>& values, bool is_signed)
{
    BtfWords w{add_string(name), btf_info(BTF_KIND_ENUM64, is_signed, static_cast<uint32_t>(values.size())), size};
    for (const auto& v : values) {
        const auto raw = static_cast<uint64_t>(v.value);
        w.insert(w.end(), {add_string(v.name), static_cast<uint32_t>(raw), static_cast<uint32_t>(raw >> 32)});
    }
    return add_raw(std::move(w));
}

uint32_t BtfBuilder::add_fwd(std::string_view name, bool is_union)
{
    return add_raw({add_string(name), btf_info(BTF_KIND_FWD, is_union, 0), 0});
}

uint32_t BtfBuilder::add_typedef(std::string_view name, uint32_t type)
{
    return add_raw({add_string(name), btf_info(BTF_KIND_TYPEDEF, false, 0), type});
}

uint32_t BtfBuilder::add_volatile(uint32_t type)
{
    return add_raw({0, btf_info(BTF_KIND_VOLATILE, false, 0), type});
}

uint32_t BtfBuilder::add_const(uint32_t type)
{
    return add_raw({0, btf_info(BTF_KIND_CONST, false, 0), type});
}

uint32_t BtfBuilder::add_restrict(uint32_t type)
{
    return add_raw({0, btf_info(BTF_KIND_RESTRICT, false, 0), type});
}

uint32_t BtfBuilder::add_func(std::string_view name, uint32_t proto, uint32_t linkage)
{
    return add_raw({add_string(name), btf_info(BTF_KIND_FUNC, false, linkage), proto});
}

uint32_t BtfBuilder::add_func_proto(uint32_t ret, const std::vector<Param>& params)
{
    BtfWords w{0, btf_info(BTF_KIND_FUNC_PROTO, false, static_cast<uint32_t>(params.size())), ret};
    for (const auto& p : params)
        w.insert(w.end(), {add_string(p.name), p.type});
    return add_raw(std::move(w));
}

uint32_t BtfBuilder::add_var(std::string_view name, uint32_t type, uint32_t linkage)
{
    return add_raw({add_string(name), btf_info(BTF_KIND_VAR, false, 0), type, linkage});
}

uint32_t BtfBuilder::add_datasec(std::string_view name, uint32_t size, const std::vector<SecVar>& vars)
{
    BtfWords w{add_string(name), btf_info(BTF_KIND_DATASEC, false, static_cast<uint32_t>(vars.size())), size};
    for (const auto& v : vars)
        w.insert(w.end(), {v.type, v.offset, v.size});
    return add_raw(std::move(w));
}

uint32_t BtfBuilder::add_float(std::string_view name, uint32_t size)
{
    return add_raw({add_string(name), btf_info(BTF_KIND_FLOAT, false, 0), size});
}

uint32_t BtfBuilder::add_decl_tag(std::string_view value, uint32_t type, int32_t component_idx, bool kflag)
{
    return add_raw(
        {add_string(value), btf_info(BTF_KIND_DECL_TAG, kflag, 0), type, static_cast<uint32_t>(component_idx)});
}

uint32_t BtfBuilder::add_type_tag(std::string_view value, uint32_t type, bool kflag)
{
    return add_raw({add_string(value), btf_info(BTF_KIND_TYPE_TAG, kflag, 0), type});
}

Bytes BtfBuilder::types_bytes() const
{
    Bytes out;
    for (const auto& w : types_)
        append_words(out, w);
    return out;
}

btf_header BtfBuilder::header() const
{
    btf_header h{};
    h.magic = BTF_MAGIC;
    h.version = BTF_VERSION;
    h.hdr_len = sizeof(btf_header);
    h.type_off = 0;
    h.type_len = static_cast<uint32_t>(types_bytes().size());
    h.str_off = h.type_len;
    h.str_len = static_cast<uint32_t>(strings.size());
    return h;
}

Bytes BtfBuilder::build() const
{
    return build([](btf_header&) {});
}

Bytes BtfBuilder::build(const std::function<void(btf_header&)>& patch) const
{
    btf_header h = header();
    patch(h);
    Bytes out;
    append_struct(out, h);
    const auto types = types_bytes();
    out.insert(out.end(), types.begin(), types.end());
    const auto* s = reinterpret_cast<const std::byte*>(strings.data());
    out.insert(out.end(), s, s + strings.size());
    return out;
}

// --- .BTF.ext ------------------------------------------------------------------------------------------------------

namespace {

void add_record(BtfExtBuilder::Subsection& sub, uint32_t sec_name_off, BtfWords record)
{
    if (sub.entries.empty() || sub.entries.back().sec_name_off != sec_name_off)
        sub.entries.push_back({sec_name_off, {}});
    sub.entries.back().records.push_back(std::move(record));
}

Bytes subsection_bytes(const BtfExtBuilder::Subsection& sub)
{
    Bytes out;
    append_words(out, {sub.record_size});
    for (const auto& e : sub.entries) {
        append_words(out, {e.sec_name_off, static_cast<uint32_t>(e.records.size())});
        for (auto r : e.records) {
            if (r.size() * sizeof(uint32_t) > sub.record_size)
                throw std::runtime_error("test .BTF.ext record larger than its record size");
            r.resize(sub.record_size / sizeof(uint32_t), 0);
            append_words(out, r);
        }
    }
    return out;
}

} // namespace

void BtfExtBuilder::add_func_info(uint32_t sec_name_off, uint32_t insn_off, uint32_t type_id)
{
    add_record(func_info, sec_name_off, {insn_off, type_id});
}

void BtfExtBuilder::add_line_info(uint32_t sec_name_off, uint32_t insn_off, uint32_t file_name_off, uint32_t line_off,
                                  uint32_t line, uint32_t col)
{
    add_record(line_info, sec_name_off, {insn_off, file_name_off, line_off, line << 10 | col});
}

void BtfExtBuilder::add_core_relo(uint32_t sec_name_off, uint32_t insn_off, uint32_t type_id, uint32_t access_str_off,
                                  uint32_t kind)
{
    add_record(core_relo, sec_name_off, {insn_off, type_id, access_str_off, kind});
}

BtfExtBuilder::Header BtfExtBuilder::header() const
{
    Header h;
    h.hdr_len = with_core_relo ? 32 : 24;
    uint32_t off = 0;
    // An absent subsection (no entries) has offset and length 0, as clang writes it.
    for (auto [sub, o, l] : {std::tuple{&func_info, &h.func_info_off, &h.func_info_len},
                             std::tuple{&line_info, &h.line_info_off, &h.line_info_len},
                             std::tuple{&core_relo, &h.core_relo_off, &h.core_relo_len}}) {
        if (sub->entries.empty() || (sub == &core_relo && !with_core_relo))
            continue;
        *o = off;
        *l = static_cast<uint32_t>(subsection_bytes(*sub).size());
        off += *l;
    }
    return h;
}

Bytes BtfExtBuilder::build() const
{
    return build([](Header&) {});
}

Bytes BtfExtBuilder::build(const std::function<void(Header&)>& patch) const
{
    Header h = header();
    patch(h);
    Bytes out;
    append_words(out, {uint32_t{h.magic} | uint32_t{h.version} << 16 | uint32_t{h.flags} << 24, h.hdr_len,
                       h.func_info_off, h.func_info_len, h.line_info_off, h.line_info_len});
    if (with_core_relo)
        append_words(out, {h.core_relo_off, h.core_relo_len});
    for (const auto* sub : {&func_info, &line_info, &core_relo}) {
        if (sub->entries.empty() || (sub == &core_relo && !with_core_relo))
            continue;
        const auto b = subsection_bytes(*sub);
        out.insert(out.end(), b.begin(), b.end());
    }
    return out;
}

} // namespace sockredir::test
