// CO-RE relocations (libbpf relo_core.c): a local access path, matched by name in the target BTF, patched in.
#include "elf/core.hpp"

#include <limits>
#include <optional>

namespace sockredir::elf {

namespace {

// BPF_CORE_* of <linux/bpf.h>, which Debian 12's headers (6.1) already have.
bool is_field_kind(uint32_t kind)
{
    return kind <= BPF_CORE_FIELD_RSHIFT_U64;
}

bool is_type_kind(uint32_t kind)
{
    return kind == BPF_CORE_TYPE_ID_LOCAL || kind == BPF_CORE_TYPE_ID_TARGET || kind == BPF_CORE_TYPE_EXISTS ||
           kind == BPF_CORE_TYPE_SIZE || kind == 12 /* BPF_CORE_TYPE_MATCHES, 6.2 */;
}

bool is_enumval_kind(uint32_t kind)
{
    return kind == BPF_CORE_ENUMVAL_EXISTS || kind == BPF_CORE_ENUMVAL_VALUE;
}

const char* kind_name(uint32_t kind)
{
    static const char* const kNames[] = {"byte_off",    "byte_sz",    "field_exists",   "signed",
                                         "lshift_u64",  "rshift_u64", "local_type_id",  "target_type_id",
                                         "type_exists", "type_size",  "enumval_exists", "enumval_value",
                                         "type_matches"};
    return kind < std::size(kNames) ? kNames[kind] : "unknown";
}

// The name up to a "___" flavour suffix: "sock___v61" and "sock" are the same type to CO-RE.
std::string_view essential(std::string_view name)
{
    const auto at = name.find("___");
    return at == std::string_view::npos ? name : name.substr(0, at);
}

bool is_composite(const BtfType& t)
{
    return t.kind == BTF_KIND_STRUCT || t.kind == BTF_KIND_UNION;
}

bool is_enum(const BtfType& t)
{
    return t.kind == BTF_KIND_ENUM || t.kind == BTF_KIND_ENUM64;
}

// One step of an access path: a named member of the composite `parent`, or an array element (parent = the array).
struct Access {
    uint32_t parent = 0;
    uint32_t index = 0;
    bool member = false;
};

// A path resolved in one BTF: where it ends and at which bit offset from the root.
struct Spec {
    uint32_t root = 0;
    std::vector<Access> path; // path[0]: the root's array index
    uint64_t bit_offset = 0;
    uint32_t field_type = 0; // the type at the end of the path
    uint32_t bitfield_size = 0;
};

std::string describe(const Btf& btf, const BtfCoreRelo& relo)
{
    return std::string("CO-RE relocation ") + kind_name(relo.kind) + " at instruction " +
           std::to_string(relo.insn_off / 8) + " on " + btf.label(relo.type_id) + " access '" + relo.access + "'";
}

bool flexible_array(const BtfType& array, size_t member_index, size_t member_count)
{
    return array.array.nelems == 0 && member_index + 1 == member_count;
}

// The local spec, as clang wrote it (bpf_core_parse_spec): every accessor after the first indexes a member of a
// composite or an element of an array.
Spec parse_local(const Btf& btf, const BtfCoreRelo& relo)
{
    const auto what = describe(btf, relo);
    if (relo.accessors.empty())
        throw Error(what + ": empty access string");
    Spec s;
    s.root = relo.type_id;
    uint32_t id = btf.resolve(relo.type_id);
    s.path.push_back({id, relo.accessors[0], false});
    s.bit_offset = uint64_t{relo.accessors[0]} * btf.type_size(id) * 8;
    uint32_t last_member_parent = 0;
    size_t last_member_index = 0;
    bool last_is_member = false;
    for (size_t i = 1; i < relo.accessors.size(); ++i) {
        const uint32_t index = relo.accessors[i];
        const BtfType& t = btf.type(id);
        if (is_composite(t)) {
            if (index >= t.members.size())
                throw Error(what + ": member #" + std::to_string(index) + " of " + btf.label(id) + ", which has " +
                            std::to_string(t.members.size()));
            s.bit_offset += t.member_bit_offset(index);
            // Anonymous members are stepped through: the target is matched by the names around them.
            if (!btf.string(t.members[index].name_off).empty())
                s.path.push_back({id, index, true});
            last_member_parent = id;
            last_member_index = index;
            last_is_member = true;
            id = btf.resolve(t.members[index].type);
        } else if (t.kind == BTF_KIND_ARRAY) {
            const bool flex =
                last_is_member && flexible_array(t, last_member_index, btf.type(last_member_parent).members.size());
            if (!flex && index >= t.array.nelems)
                throw Error(what + ": element " + std::to_string(index) + " of " + btf.label(id) + ", which has " +
                            std::to_string(t.array.nelems));
            s.path.push_back({id, index, false});
            const uint32_t elem = btf.resolve(t.array.type);
            s.bit_offset += uint64_t{index} * btf.type_size(elem) * 8;
            last_is_member = false;
            id = elem;
        } else {
            throw Error(what + ": accessor #" + std::to_string(i) + " goes into " + btf.label(id) +
                        ", which is no struct, union or array");
        }
    }
    s.field_type = id;
    if (last_is_member) {
        const BtfType& parent = btf.type(last_member_parent);
        s.bitfield_size = parent.member_bitfield_size(last_member_index);
    }
    return s;
}

// bpf_core_fields_are_compat: can a field of type `local_id` be read as one of type `target_id`?
bool fields_compatible(const Btf& local, uint32_t local_id, const Btf& target, uint32_t target_id, int depth = 0)
{
    if (depth > 32)
        return false;
    const BtfType& l = local.type(local.resolve(local_id));
    const BtfType& t = target.type(target.resolve(target_id));
    if (is_composite(l) && is_composite(t))
        return true;
    if (is_enum(l) && is_enum(t))
        return true;
    if (l.kind != t.kind)
        return false;
    switch (l.kind) {
    case BTF_KIND_PTR:
    case BTF_KIND_FLOAT:
    case BTF_KIND_INT:
    case BTF_KIND_UNKN:
        return true;
    case BTF_KIND_FWD:
        return essential(local.name(local.resolve(local_id))) == essential(target.name(target.resolve(target_id)));
    case BTF_KIND_ARRAY:
        return fields_compatible(local, l.array.type, target, t.array.type, depth + 1);
    default:
        return false;
    }
}

// Finds the member `name` in the composite `id` of `target`, through anonymous members (bpf_core_match_member);
// adds its bit offset to `bit_offset` and returns the member's parent and index.
std::optional<std::pair<uint32_t, size_t>> match_member(const Btf& target, uint32_t id, std::string_view name,
                                                        uint64_t& bit_offset, int depth = 0)
{
    if (depth > 32)
        return std::nullopt;
    const BtfType& t = target.type(id);
    if (!is_composite(t))
        return std::nullopt;
    for (size_t i = 0; i < t.members.size(); ++i) {
        const auto member_name = target.string(t.members[i].name_off);
        const uint64_t offset = t.member_bit_offset(i);
        if (member_name == name) {
            bit_offset += offset;
            return std::pair{id, i};
        }
        if (member_name.empty()) {
            uint64_t inner = bit_offset + offset;
            if (auto found = match_member(target, target.resolve(t.members[i].type), name, inner, depth + 1)) {
                bit_offset = inner;
                return found;
            }
        }
    }
    return std::nullopt;
}

// The local spec matched in the target from the candidate root `root` (bpf_core_spec_match for field kinds).
std::optional<Spec> match_field(const Btf& local, const Spec& ls, const Btf& target, uint32_t root)
{
    Spec ts;
    ts.root = root;
    uint32_t id = target.resolve(root);
    ts.bit_offset = uint64_t{ls.path[0].index} * target.type_size(id) * 8;
    ts.path.push_back({id, ls.path[0].index, false});
    uint32_t member_parent = 0;
    size_t member_index = 0;
    bool last_is_member = false;
    for (size_t i = 1; i < ls.path.size(); ++i) {
        const Access& a = ls.path[i];
        if (a.member) {
            const BtfType& lp = local.type(a.parent);
            const auto name = local.string(lp.members[a.index].name_off);
            const auto found = match_member(target, id, name, ts.bit_offset);
            if (!found)
                return std::nullopt;
            const BtfType& tp = target.type(found->first);
            if (!fields_compatible(local, lp.members[a.index].type, target, tp.members[found->second].type))
                return std::nullopt;
            ts.path.push_back({found->first, static_cast<uint32_t>(found->second), true});
            member_parent = found->first;
            member_index = found->second;
            last_is_member = true;
            id = target.resolve(tp.members[found->second].type);
        } else {
            const BtfType& t = target.type(id);
            if (t.kind != BTF_KIND_ARRAY)
                return std::nullopt;
            const bool flex =
                last_is_member && flexible_array(t, member_index, target.type(member_parent).members.size());
            if (!flex && a.index >= t.array.nelems)
                return std::nullopt;
            const uint32_t elem = target.resolve(t.array.type);
            ts.bit_offset += uint64_t{a.index} * target.type_size(elem) * 8;
            ts.path.push_back({id, a.index, false});
            last_is_member = false;
            id = elem;
        }
    }
    ts.field_type = id;
    if (last_is_member)
        ts.bitfield_size = target.type(member_parent).member_bitfield_size(member_index);
    return ts;
}

struct FieldValue {
    uint64_t value = 0;
    uint32_t field_size = 0; // bytes of a plain (non-bitfield) field, for load-size adjustment
};

// bpf_core_calc_field_relo: the value a field relocation of `kind` takes for the spec `s` in `btf`.
FieldValue field_value(const Btf& btf, const Spec& s, uint32_t kind, const std::string& what)
{
    if (kind == BPF_CORE_FIELD_EXISTS)
        return {1, 0};
    const uint32_t size = btf.type_size(s.field_type);
    const BtfType& ft = btf.type(s.field_type);
    uint64_t byte_size = size;
    uint64_t byte_offset = s.bit_offset / 8;
    uint64_t bit_size = uint64_t{size} * 8;
    const bool bitfield = s.bitfield_size != 0;
    if (bitfield) {
        bit_size = s.bitfield_size;
        byte_offset = s.bit_offset / 8 / byte_size * byte_size;
        while (s.bit_offset + bit_size - byte_offset * 8 > byte_size * 8) {
            if (byte_size >= 8)
                throw Error(what + ": a bitfield that no 8-byte load covers");
            byte_size *= 2;
            byte_offset = s.bit_offset / 8 / byte_size * byte_size;
        }
    } else if (s.bit_offset % 8 != 0) {
        throw Error(what + ": a field that does not start on a byte");
    }
    switch (kind) {
    case BPF_CORE_FIELD_BYTE_OFFSET:
        return {byte_offset, bitfield ? 0U : size};
    case BPF_CORE_FIELD_BYTE_SIZE:
        return {byte_size, 0};
    case BPF_CORE_FIELD_SIGNED:
        if (is_enum(ft))
            return {ft.kflag ? 1U : 0U, 0};
        return {ft.kind == BTF_KIND_INT && (ft.int_encoding() & BTF_INT_SIGNED) != 0 ? 1U : 0U, 0};
    case BPF_CORE_FIELD_LSHIFT_U64:
        // Little-endian: the bits above the field shift out to the left.
        return {64 - (s.bit_offset + bit_size - byte_offset * 8), 0};
    case BPF_CORE_FIELD_RSHIFT_U64:
        return {64 - bit_size, 0};
    default:
        throw Error(what + ": not a field relocation");
    }
}

// The root type as its name is matched: past modifiers, which have no name, but not past a typedef, whose name is
// the one the program wrote (bpf_core_type_size(u32), a typedef'd anonymous struct), as libbpf matches it.
uint32_t named_root(const Btf& btf, uint32_t id)
{
    for (int depth = 0; depth < 32; ++depth) {
        const uint32_t kind = btf.type(id).kind;
        if (kind != BTF_KIND_CONST && kind != BTF_KIND_VOLATILE && kind != BTF_KIND_RESTRICT &&
            kind != BTF_KIND_TYPE_TAG)
            break;
        id = btf.type(id).size_or_type;
    }
    return id;
}

// Whether a load or store of a field that changed size may change its width (libbpf bpf_core_calc_relo): a pointer
// (read as an unsigned integer) or an unsigned integer keeps its value when zero-extended; a signed integer, an
// enum or a struct does not.
bool resizable(const Btf& local, uint32_t local_id, const Btf& target, uint32_t target_id)
{
    const BtfType& l = local.type(local.resolve(local_id));
    const BtfType& t = target.type(target.resolve(target_id));
    if (l.kind == BTF_KIND_PTR && t.kind == BTF_KIND_PTR)
        return true;
    return l.kind == BTF_KIND_INT && t.kind == BTF_KIND_INT && (l.int_encoding() & BTF_INT_SIGNED) == 0 &&
           (t.int_encoding() & BTF_INT_SIGNED) == 0;
}

// Target types of the same kind and essential name as the local root (a typedef's candidates are typedefs).
std::vector<uint32_t> candidates(const Btf& local, uint32_t local_root, const Btf& target)
{
    const uint32_t lid = named_root(local, local_root);
    const BtfType& lt = local.type(lid);
    const auto name = essential(local.name(lid));
    std::vector<uint32_t> out;
    if (name.empty())
        return out;
    const auto& types = target.types();
    for (uint32_t id = 1; id < types.size(); ++id) {
        const BtfType& t = types[id];
        const bool same_kind = t.kind == lt.kind || (is_enum(t) && is_enum(lt));
        if (same_kind && essential(target.name(id)) == name)
            out.push_back(id);
    }
    return out;
}

} // namespace

CoreResolution resolve_core_relocation(const Btf& local, const BtfCoreRelo& relo, const Btf& target)
{
    const auto what = describe(local, relo);
    CoreResolution r;
    const uint32_t lid = local.resolve(relo.type_id);
    if (local.name(named_root(local, relo.type_id)).empty() && !(relo.kind == BPF_CORE_TYPE_ID_LOCAL))
        throw Error(what + ": the root type has no name to match in the kernel's BTF");
    std::optional<uint64_t> agreed;
    auto agree = [&](uint64_t value, uint32_t id, const std::string& where) {
        if (agreed && *agreed != value)
            throw Error(what + ": the kernel's candidates disagree (" + std::to_string(*agreed) + " and " +
                        std::to_string(value) + " at " + where + ")");
        agreed = value;
        r.target_type = r.target_type == 0 ? id : r.target_type;
    };

    if (is_field_kind(relo.kind)) {
        const Spec ls = parse_local(local, relo);
        const FieldValue lv = field_value(local, ls, relo.kind, what);
        r.local_value = lv.value;
        for (uint32_t c : candidates(local, relo.type_id, target)) {
            const auto ts = match_field(local, ls, target, c);
            if (!ts)
                continue;
            const FieldValue tv = field_value(target, *ts, relo.kind, what);
            agree(tv.value, c, target.label(c));
            if (relo.kind == BPF_CORE_FIELD_BYTE_OFFSET && tv.field_size != lv.field_size) {
                if (resizable(local, ls.field_type, target, ts->field_type) && lv.field_size != 0 && tv.field_size != 0)
                    r.load_size = tv.field_size;
                else
                    r.unsafe_resize = true;
            }
        }
    } else if (is_type_kind(relo.kind)) {
        if (relo.accessors.size() != 1 || relo.accessors[0] != 0)
            throw Error(what + ": a type relocation's access string must be '0'");
        r.local_value = relo.kind == BPF_CORE_TYPE_ID_LOCAL    ? relo.type_id
                        : relo.kind == BPF_CORE_TYPE_SIZE      ? local.type_size(relo.type_id)
                        : relo.kind == BPF_CORE_TYPE_ID_TARGET ? relo.type_id
                                                               : 1;
        if (relo.kind == BPF_CORE_TYPE_ID_LOCAL) {
            r.exists = true;
            r.value = relo.type_id;
            return r;
        }
        for (uint32_t c : candidates(local, relo.type_id, target)) {
            const uint64_t v = relo.kind == BPF_CORE_TYPE_SIZE        ? target.type_size(c)
                               : relo.kind == BPF_CORE_TYPE_ID_TARGET ? c
                                                                      : 1;
            if (relo.kind == BPF_CORE_TYPE_ID_TARGET && agreed)
                continue; // the first candidate is the one the kernel's id names
            agree(v, c, target.label(c));
        }
    } else if (is_enumval_kind(relo.kind)) {
        const BtfType& lt = local.type(lid);
        if (!is_enum(lt) || relo.accessors.size() != 1 || relo.accessors[0] >= lt.enum_values.size())
            throw Error(what + ": not an enumerator of an enum");
        const auto& lv = lt.enum_values[relo.accessors[0]];
        // Enumerators have flavours too (enum cgroup_subsys_id___local { memory_cgrp_id___local }, as libbpf's
        // CO-RE guide writes a local copy of a kernel enum): matched by essential name.
        const auto name = essential(local.string(lv.name_off));
        r.local_value = relo.kind == BPF_CORE_ENUMVAL_EXISTS ? 1 : lv.value;
        for (uint32_t c : candidates(local, relo.type_id, target)) {
            const BtfType& t = target.type(target.resolve(c));
            if (!is_enum(t))
                continue;
            for (const auto& v : t.enum_values)
                if (essential(target.string(v.name_off)) == name)
                    agree(relo.kind == BPF_CORE_ENUMVAL_EXISTS ? 1 : v.value, c, target.label(c));
        }
    } else {
        throw Error(what + ": kind " + std::to_string(relo.kind) + " is not supported");
    }
    r.exists = agreed.has_value();
    r.value = agreed.value_or(0);
    return r;
}

void patch_core_instruction(std::vector<bpf_insn>& insns, size_t index, const BtfCoreRelo& relo,
                            const CoreResolution& res, const std::string& program)
{
    const auto what = "program '" + program + "': CO-RE relocation " + kind_name(relo.kind) + " at instruction " +
                      std::to_string(index);
    if (index >= insns.size())
        throw Error(what + ": outside the program (" + std::to_string(insns.size()) + " instructions)");
    bpf_insn& insn = insns[index];
    const uint8_t cls = BPF_CLASS(insn.code);
    const bool ld_imm64 = insn.code == (BPF_LD | BPF_IMM | BPF_DW);
    // The *_EXISTS kinds say 0 of what is missing, and so does every type-based kind (bpf_core_calc_type_relo):
    // bpf_core_type_size() and bpf_core_type_id_kernel() of a type the kernel lacks are 0, which a program tests.
    const bool zero_when_missing =
        relo.kind == BPF_CORE_FIELD_EXISTS || relo.kind == BPF_CORE_ENUMVAL_EXISTS || is_type_kind(relo.kind);
    // Unreachable code may keep it; the verifier names it (unknown func #195896080) where it is reached.
    const auto poison = [&] {
        if (ld_imm64 && index + 1 < insns.size())
            insns[index + 1] = bpf_insn{BPF_JMP | BPF_JA, 0, 0, 0, 0};
        insn = bpf_insn{BPF_JMP | BPF_CALL, 0, 0, 0, kCorePoisonImm};
    };
    if (!res.exists && !zero_when_missing) {
        poison();
        return;
    }
    const uint64_t value = res.exists ? res.value : 0;
    if (cls == BPF_ALU || cls == BPF_ALU64) {
        if (BPF_SRC(insn.code) != BPF_K)
            throw Error(what + ": an ALU instruction with a register operand");
        if (static_cast<uint32_t>(insn.imm) != static_cast<uint32_t>(res.local_value))
            throw Error(what + ": holds " + std::to_string(insn.imm) + ", the object's BTF says " +
                        std::to_string(res.local_value));
        if (value > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
            throw Error(what + ": value " + std::to_string(value) + " does not fit an immediate");
        insn.imm = static_cast<int32_t>(value);
    } else if (cls == BPF_LDX || cls == BPF_ST || cls == BPF_STX) {
        if (static_cast<uint64_t>(static_cast<uint16_t>(insn.off)) != res.local_value)
            throw Error(what + ": offset " + std::to_string(insn.off) + ", the object's BTF says " +
                        std::to_string(res.local_value));
        if (value > static_cast<uint64_t>(std::numeric_limits<int16_t>::max()))
            throw Error(what + ": offset " + std::to_string(value) + " does not fit a load or store");
        if (res.unsafe_resize) {
            // A wider or narrower access would read or write another value (a sign lost, half a struct).
            poison();
            return;
        }
        insn.off = static_cast<int16_t>(value);
        if (res.load_size != 0) {
            uint8_t size = 0;
            switch (res.load_size) {
            case 1:
                size = BPF_B;
                break;
            case 2:
                size = BPF_H;
                break;
            case 4:
                size = BPF_W;
                break;
            case 8:
                size = BPF_DW;
                break;
            default:
                throw Error(what + ": the kernel's field is " + std::to_string(res.load_size) +
                            " bytes, which no load reads");
            }
            insn.code = static_cast<uint8_t>((insn.code & ~0x18) | size);
        }
    } else if (ld_imm64) {
        if (index + 1 >= insns.size())
            throw Error(what + ": a 64-bit immediate load cut off by the program's end");
        const uint64_t held =
            uint64_t{static_cast<uint32_t>(insn.imm)} | uint64_t{static_cast<uint32_t>(insns[index + 1].imm)} << 32;
        if (held != res.local_value)
            throw Error(what + ": holds " + std::to_string(held) + ", the object's BTF says " +
                        std::to_string(res.local_value));
        insn.imm = static_cast<int32_t>(static_cast<uint32_t>(value));
        insns[index + 1].imm = static_cast<int32_t>(static_cast<uint32_t>(value >> 32));
    } else {
        throw Error(what + ": instruction code " + std::to_string(insn.code) + " takes no relocation");
    }
}

CoreStats apply_core_relocations(std::vector<bpf_insn>& insns, std::span<const BtfCoreRelo> relos,
                                 uint64_t program_offset, const Btf& local, const Btf& target,
                                 const std::string& program)
{
    CoreStats stats;
    const uint64_t end = program_offset + insns.size() * sizeof(bpf_insn);
    for (const auto& relo : relos) {
        if (relo.insn_off < program_offset || relo.insn_off >= end)
            continue;
        const auto res = resolve_core_relocation(local, relo, target);
        const size_t index = (relo.insn_off - program_offset) / sizeof(bpf_insn);
        patch_core_instruction(insns, index, relo, res, program);
        const bool poisoned = insns[index].code == (BPF_JMP | BPF_CALL) && insns[index].imm == kCorePoisonImm;
        ++(res.exists && !poisoned ? stats.resolved : stats.poisoned);
    }
    return stats;
}

} // namespace sockredir::elf
