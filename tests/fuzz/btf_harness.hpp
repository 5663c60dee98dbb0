// What fuzz_btf checks of one input, shared with the unit tests that replay its corpus and regressions: every entry
// point of elf/btf either succeeds or refuses with a one-line base::Error naming the section; what succeeds keeps its
// promises (encode round trips, sanitized and fixed-up BTF encodes into BTF that parses to the same model).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "elf/btf.hpp"
#include "loader/base/error.hpp"

namespace sockredir::test {

// An input is a little-endian u32 N, then N bytes of .BTF (fewer if the input ends first), then .BTF.ext.
struct BtfFuzzInput {
    std::span<const std::byte> btf;
    std::span<const std::byte> ext;
};

inline BtfFuzzInput split_btf_fuzz_input(std::span<const std::byte> data)
{
    if (data.size() < sizeof(uint32_t))
        return {data, {}};
    uint32_t n = 0;
    std::memcpy(&n, data.data(), sizeof n);
    const auto rest = data.subspan(sizeof n);
    const size_t btf_size = n < rest.size() ? n : rest.size();
    return {rest.first(btf_size), rest.subspan(btf_size)};
}

inline std::vector<std::byte> make_btf_fuzz_input(std::span<const std::byte> btf, std::span<const std::byte> ext)
{
    std::vector<std::byte> out(sizeof(uint32_t));
    const auto n = static_cast<uint32_t>(btf.size());
    std::memcpy(out.data(), &n, sizeof n);
    out.insert(out.end(), btf.begin(), btf.end());
    out.insert(out.end(), ext.begin(), ext.end());
    return out;
}

namespace detail {

// A refusal must be one line that starts with "section '".
inline std::string check_refusal(const base::Error& e, const char* step)
{
    const std::string what = e.what();
    if (what.rfind("section '", 0) != 0)
        return std::string(step) + ": message does not name the section: " + what;
    if (what.find('\n') != std::string::npos || what.find('\r') != std::string::npos)
        return std::string(step) + ": message is not one line: " + what;
    if (what.size() > 4096)
        return std::string(step) + ": message of " + std::to_string(what.size()) + " bytes";
    return {};
}

inline bool canonical_layout(std::span<const std::byte> bytes)
{
    btf_header h{};
    if (bytes.size() < sizeof h)
        return false;
    std::memcpy(&h, bytes.data(), sizeof h);
    return h.hdr_len == sizeof h && h.type_off == 0 && h.str_off == h.type_len &&
           bytes.size() == uint64_t{sizeof h} + h.type_len + h.str_len;
}

// The BTF a step left must encode into bytes that parse back to the same model.
inline std::string check_encodes(const elf::Btf& btf, const char* step)
{
    std::vector<std::byte> bytes;
    try {
        bytes = elf::encode(btf);
    } catch (const base::Error& e) {
        return std::string(step) + ": encode refused: " + e.what();
    }
    try {
        if (!(elf::parse_btf(bytes, btf.section()) == btf))
            return std::string(step) + ": parse_btf(encode(btf)) != btf";
    } catch (const base::Error& e) {
        return std::string(step) + ": encode wrote BTF that parse_btf refuses: " + e.what();
    }
    return {};
}

// Kernels gained BTF kinds in this order (libbpf's FEAT_BTF_*): sanitizing for each step of it.
inline elf::BtfKernelSupport kernel_level(int level)
{
    elf::BtfKernelSupport k;
    k.func = level > 0;
    k.datasec = level > 1;
    k.func_global = level > 2;
    k.float_ = level > 3;
    k.decl_tag = level > 4;
    k.type_tag = level > 5;
    k.enum64 = level > 6;
    k.qmark_datasec = level > 7;
    return k;
}

inline std::string check_btf(const elf::Btf& btf, std::span<const std::byte> bytes)
{
    if (auto v = check_encodes(btf, "encode"); !v.empty())
        return v;
    if (canonical_layout(bytes) && elf::encode(btf) != std::vector<std::byte>(bytes.begin(), bytes.end()))
        return "encode: a blob of clang's layout did not encode back byte for byte";

    // Lookups on the first types (the index is built once; each lookup is cheap).
    const auto& types = btf.types();
    const uint32_t n = types.size() < 65 ? static_cast<uint32_t>(types.size()) : 65;
    for (uint32_t id = 0; id < n; ++id) {
        const auto& t = types[id];
        const auto name = btf.name(id);
        (void)btf.label(id);
        (void)btf.resolve(id);
        try {
            (void)btf.type_size(id);
        } catch (const base::Error& e) {
            if (auto v = check_refusal(e, "type_size"); !v.empty())
                return v;
        }
        if (id != 0 && !name.empty()) {
            const auto found = btf.find(t.kind, name);
            if (!found || *found > id || types[*found].kind != t.kind || btf.name(*found) != name)
                return "find: type [" + std::to_string(id) + "] is not found by its kind and name";
        }
        if ((t.kind == BTF_KIND_STRUCT || t.kind == BTF_KIND_UNION) && !t.members.empty()) {
            const auto first = btf.string(t.members[0].name_off);
            if (!first.empty()) {
                const auto ref = btf.find_member(id, first);
                if (!ref || ref->parent != id || ref->index != 0)
                    return "find_member: type [" + std::to_string(id) + "] does not find its first member";
            }
            // The last member's name may first be found inside an anonymous member; whatever is found has the name.
            const auto last = btf.string(t.members.back().name_off);
            if (!last.empty()) {
                const auto ref = btf.find_member(id, last);
                if (!ref || btf.string(btf.type(ref->parent).members.at(ref->index).name_off) != last)
                    return "find_member: type [" + std::to_string(id) + "] does not find its last member";
            }
            // A name no C member has (a hostile one may): the whole walk through anonymous members, each type once.
            if (const auto ref = btf.find_member(id, "\x01");
                ref && btf.string(btf.type(ref->parent).members.at(ref->index).name_off) != "\x01")
                return "find_member: type [" + std::to_string(id) + "] finds a member of another name";
        }
    }
    try {
        (void)elf::parse_btf_maps(btf);
    } catch (const base::Error& e) {
        if (auto v = check_refusal(e, "parse_btf_maps"); !v.empty())
            return v;
    }

    // Fix-ups with made-up ELF facts: every named section 4096 bytes, each symbol at a hash of its name.
    elf::Btf fixed = btf;
    try {
        elf::fixup_datasecs(
            fixed,
            [](std::string_view s) -> std::optional<uint64_t> {
                if (s.empty() || s[0] == 'x')
                    return std::nullopt;
                return 4096;
            },
            [](std::string_view s) -> std::optional<elf::BtfVarSymbol> {
                if (!s.empty() && s[0] == 'y')
                    return std::nullopt;
                return elf::BtfVarSymbol{std::hash<std::string_view>{}(s) % 4096, s.size() % 2 == 1};
            });
        if (auto v = check_encodes(fixed, "fixup_datasecs"); !v.empty())
            return v;
    } catch (const base::Error& e) {
        if (auto v = check_refusal(e, "fixup_datasecs"); !v.empty())
            return v;
    }

    for (int level = 0; level <= 8; ++level) {
        elf::Btf s = btf;
        try {
            elf::sanitize(s, kernel_level(level));
        } catch (const base::Error& e) {
            if (auto v = check_refusal(e, "sanitize"); !v.empty())
                return v;
            continue;
        }
        if (level == 8 && !(s == btf))
            return "sanitize: a kernel that supports everything changed the BTF";
        if (auto v = check_encodes(s, "sanitize"); !v.empty())
            return v + " (kernel level " + std::to_string(level) + ")";
        if (elf::encode_for_kernel(btf, kernel_level(level)) != elf::encode(s))
            return "encode_for_kernel: not the encoding of the sanitized copy (kernel level " + std::to_string(level) +
                   ")";
    }
    return {};
}

inline std::string check_ext(const elf::Btf& btf, std::span<const std::byte> bytes)
{
    elf::BtfExt ext;
    try {
        ext = elf::parse_btf_ext(bytes, btf);
    } catch (const base::Error& e) {
        return check_refusal(e, "parse_btf_ext");
    }
    for (const auto& s : ext.func_info) {
        const auto converted = elf::program_func_info(ext, s.section, 0, UINT64_MAX);
        if (converted.size() != ext.func_info_of(s.section).size())
            return "program_func_info: lost records of section '" + s.section + "'";
        for (size_t i = 0; i < converted.size(); ++i)
            if (uint64_t{converted[i].insn_off} * 8 != ext.func_info_of(s.section)[i].insn_off)
                return "program_func_info: insn_off is not the byte offset / 8";
    }
    for (const auto& s : ext.line_info)
        if (elf::program_line_info(ext, s.section, 0, UINT64_MAX).size() != s.records.size())
            return "program_line_info: lost records of section '" + s.section + "'";
    for (const auto& s : ext.core_relos)
        for (const auto& r : s.records)
            if (r.accessors.empty() || r.access != std::string(btf.string(r.access_str_off)))
                return "parse_btf_ext: a CO-RE relocation without its access string";
    return {};
}

} // namespace detail

// Empty when the input keeps every promise, else what it broke. Exceptions other than base::Error are caught and
// reported too, so that the unit tests can name them (the fuzz target aborts on a non-empty answer).
inline std::string check_btf_fuzz_input(std::span<const std::byte> data)
{
    const auto input = split_btf_fuzz_input(data);
    try {
        std::optional<elf::Btf> btf;
        try {
            btf = elf::parse_btf(input.btf);
        } catch (const base::Error& e) {
            return detail::check_refusal(e, "parse_btf");
        }
        if (auto v = detail::check_btf(*btf, input.btf); !v.empty())
            return v;
        if (!input.ext.empty())
            return detail::check_ext(*btf, input.ext);
        return {};
    } catch (const base::Error& e) {
        return std::string("base::Error where none was expected: ") + e.what();
    } catch (const std::exception& e) {
        return std::string("an exception other than base::Error escaped: ") + e.what();
    }
}

} // namespace sockredir::test
