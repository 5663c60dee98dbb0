// The kernel's program types, map types and helpers as data: their names, the release that added each, and what
// the loader and the probes need to know to make the smallest one. One row per type, for every user of these facts.
#pragma once

#include <cstdint>
#include <string>

namespace sockredir::ebpf {

struct ProgTypeInfo {
    uint32_t type;
    const char* name;  // the UAPI name without its prefix: "SK_MSG" for BPF_PROG_TYPE_SK_MSG
    const char* since; // the first Linux release with it: "4.17"
    // What a program of this type says at load when it is probed (some types refuse to load without one).
    uint32_t expected_attach_type;
    // A trivial program of this type loads on its own: false for the types that need a BTF target to attach to
    // (tracing, extensions, LSM, struct_ops) or load flags (syscall).
    bool probeable;
};

struct MapTypeInfo {
    uint32_t type;
    const char* name;  // "SOCKHASH" for BPF_MAP_TYPE_SOCKHASH
    const char* since; // "4.18"
    // The loader creates it from a definition alone: no inner map, no program fds, no struct_ops.
    bool creatable;
    // The kernel creates it only with BTF for its key and value (local storage).
    bool needs_btf;
    // The smallest map of this type the kernel accepts, for the probe; probeable false when it takes more than a
    // definition (an inner map, a struct_ops type).
    bool probeable;
    uint32_t key_size;
    uint32_t value_size;
    uint32_t max_entries;
    uint32_t flags;
};

// nullptr for a type the table does not know (newer than these headers, or no type at all).
const ProgTypeInfo* find_prog_type(uint32_t type);
const MapTypeInfo* find_map_type(uint32_t type);

// Names for messages: "BPF_MAP_TYPE_SOCKHASH", "BPF_PROG_TYPE_SK_MSG", or the number.
std::string map_type_name(uint32_t type);
std::string prog_type_name(uint32_t type);
// The short names bpftool and libbpf's section names use: "sockhash", "sk_msg", or the number.
std::string map_type_label(uint32_t type);
std::string prog_type_label(uint32_t type);

// "bpf_sk_storage_get" for BPF_FUNC_sk_storage_get, from the kernel's own list (__BPF_FUNC_MAPPER); "helper #N" for
// an id newer than these headers.
std::string helper_name(uint32_t id);
// The first Linux release in which programs of `prog_type` may call helper `id` ("5.15"), where the table knows it:
// the release that allowed it in that type where that came later than the helper, else the helper's own. nullptr
// when unknown.
const char* helper_since(uint32_t prog_type, uint32_t id);

} // namespace sockredir::ebpf
