// Planning: program types from section names, the four maps checked against the shared layout.
#include "loader/app/plan.hpp"

#include <sys/socket.h>

#include "bpf/sockredir_shared.h"
#include "loader/base/error.hpp"

namespace sockredir::app {

using base::Error;

static_assert(SOCKREDIR_AF_INET == AF_INET, "bpf/sockredir_shared.h disagrees with <sys/socket.h>");
static_assert(SOCKREDIR_AF_INET6 == AF_INET6, "bpf/sockredir_shared.h disagrees with <sys/socket.h>");
static_assert(sizeof(sockredir_key) == 48, "the key must have no padding");

namespace {

struct SectionType {
    const char* section;
    uint32_t prog_type;
    uint32_t expected_attach_type;
    uint32_t attach_type;
};

constexpr SectionType kSectionTypes[] = {
    {"sockops", BPF_PROG_TYPE_SOCK_OPS, 0, BPF_CGROUP_SOCK_OPS},
    {"sk_msg", BPF_PROG_TYPE_SK_MSG, BPF_SK_MSG_VERDICT, BPF_SK_MSG_VERDICT},
};

struct MapShape {
    const char* name;
    uint32_t type;
    uint32_t key_size;
    uint32_t value_size;
    uint32_t min_entries;
    uint32_t flags;
    bool needs_btf;
};

// What the loader and the programs agree on; bpf/sockredir_shared.h is the source.
constexpr MapShape kMapShapes[] = {
    {SOCKREDIR_MAP_SOCKS, BPF_MAP_TYPE_SOCKHASH, sizeof(sockredir_key), sizeof(uint64_t), 1, 0, false},
    {SOCKREDIR_MAP_COUNTERS, BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t), sizeof(uint64_t), SOCKREDIR_COUNTER_MAX, 0,
     false},
    {SOCKREDIR_MAP_CONFIG, BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), sizeof(sockredir_config), 1, 0, false},
    {SOCKREDIR_MAP_PATH, BPF_MAP_TYPE_SK_STORAGE, sizeof(int), sizeof(uint32_t), 0, BPF_F_NO_PREALLOC, true},
};

size_t index_of_map(const elf::ObjectSpec& object, const char* name)
{
    for (size_t i = 0; i < object.maps.size(); ++i)
        if (object.maps[i].name == name)
            return i;
    throw Error(std::string("section 'maps': map '") + name + "' is missing");
}

void check_map(const elf::MapSpec& m, const MapShape& shape)
{
    const auto what = "section 'maps': map '" + m.name + "'";
    if (m.type != shape.type)
        throw Error(what + ": type " + map_type_name(m.type) + ", expected " + map_type_name(shape.type));
    if (m.key_size != shape.key_size)
        throw Error(what + ": key size " + std::to_string(m.key_size) + ", expected " + std::to_string(shape.key_size));
    if (m.value_size != shape.value_size)
        throw Error(what + ": value size " + std::to_string(m.value_size) + ", expected " +
                    std::to_string(shape.value_size));
    if (shape.type == BPF_MAP_TYPE_SK_STORAGE ? m.max_entries != 0 : m.max_entries < shape.min_entries)
        throw Error(what + ": max_entries " + std::to_string(m.max_entries) + " is not valid for this map");
    if (m.max_entries > kMaxSockets)
        throw Error(what + ": max_entries " + std::to_string(m.max_entries) + " exceeds " +
                    std::to_string(kMaxSockets));
    if (m.flags != shape.flags)
        throw Error(what + ": flags " + std::to_string(m.flags) + ", expected " + std::to_string(shape.flags));
}

} // namespace

std::string map_type_name(uint32_t type)
{
    switch (type) {
    case BPF_MAP_TYPE_SOCKHASH:
        return "BPF_MAP_TYPE_SOCKHASH";
    case BPF_MAP_TYPE_PERCPU_ARRAY:
        return "BPF_MAP_TYPE_PERCPU_ARRAY";
    case BPF_MAP_TYPE_ARRAY:
        return "BPF_MAP_TYPE_ARRAY";
    case BPF_MAP_TYPE_SK_STORAGE:
        return "BPF_MAP_TYPE_SK_STORAGE";
    case BPF_MAP_TYPE_HASH:
        return "BPF_MAP_TYPE_HASH";
    case BPF_MAP_TYPE_SOCKMAP:
        return "BPF_MAP_TYPE_SOCKMAP";
    default:
        return std::to_string(type);
    }
}

LoadPlan make_plan(elf::ObjectSpec object, const PlanOptions& options)
{
    LoadPlan plan;
    plan.object = std::move(object);
    const auto& obj = plan.object;

    for (const auto& m : obj.maps) {
        const MapShape* shape = nullptr;
        for (const auto& s : kMapShapes)
            if (m.name == s.name)
                shape = &s;
        if (shape == nullptr)
            throw Error("section 'maps': map '" + m.name + "' (" + map_type_name(m.type) +
                        ") is not one sockredir knows");
        check_map(m, *shape);
        // A second definition would be a second kernel map, and the relocations would be split between the two.
        for (const auto& seen : plan.maps)
            if (seen.spec.name == m.name)
                throw Error("section 'maps': map '" + m.name + "' is defined twice");
        plan.maps.push_back({m, shape->needs_btf});
    }
    plan.sock_hash = index_of_map(obj, SOCKREDIR_MAP_SOCKS);
    plan.counters = index_of_map(obj, SOCKREDIR_MAP_COUNTERS);
    plan.config = index_of_map(obj, SOCKREDIR_MAP_CONFIG);
    plan.path_state = index_of_map(obj, SOCKREDIR_MAP_PATH);
    if (options.max_sockets != 0) {
        if (options.max_sockets > kMaxSockets)
            throw Error("--max-sockets " + std::to_string(options.max_sockets) + " exceeds " +
                        std::to_string(kMaxSockets));
        plan.maps[plan.sock_hash].spec.max_entries = options.max_sockets;
    }

    bool have_sockops = false, have_msg = false;
    for (size_t i = 0; i < obj.programs.size(); ++i) {
        const auto& p = obj.programs[i];
        const SectionType* type = nullptr;
        for (const auto& t : kSectionTypes)
            if (p.section == t.section)
                type = &t;
        if (type == nullptr)
            throw Error("section '" + p.section + "': program '" + p.name +
                        "' has an unknown program type (supported sections: sockops, sk_msg)");
        bool& seen = type->prog_type == BPF_PROG_TYPE_SOCK_OPS ? have_sockops : have_msg;
        if (seen)
            throw Error("section '" + p.section + "': a second program of this type ('" + p.name + "')");
        seen = true;
        if (type->prog_type == BPF_PROG_TYPE_SOCK_OPS)
            plan.sockops = plan.programs.size();
        else
            plan.msg = plan.programs.size();
        plan.programs.push_back({i, type->prog_type, type->expected_attach_type, type->attach_type});
        for (const auto& r : p.relocations)
            if (r.map >= plan.maps.size())
                throw Error("section '" + p.section + "': relocation names map #" + std::to_string(r.map) + " of " +
                            std::to_string(plan.maps.size()));
    }
    if (!have_sockops)
        throw Error("ELF file: no 'sockops' program section");
    if (!have_msg)
        throw Error("ELF file: no 'sk_msg' program section");
    return plan;
}

LoadPlan plan_object(std::span<const std::byte> bytes, const PlanOptions& options)
{
    return make_plan(elf::parse_object(bytes), options);
}

} // namespace sockredir::app
