// What to load, by name and with no kernel object yet: maps, programs and their types, decided from the object alone.
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "elf/object.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/types.hpp" // map_type_name, prog_type_name for the messages of every layer above

namespace sockredir::ebpf {

using base::Error;

// Objects by name, in the object's order (maps are created, programs loaded, in that order). `kind` names the
// elements in the error of at() ("map", "program").
template <typename T> class ByName {
public:
    explicit ByName(const char* kind) : kind_(kind) {}

    const T* find(std::string_view name) const
    {
        for (const auto& e : items_)
            if (e.name == name)
                return &e;
        return nullptr;
    }
    T* find(std::string_view name) { return const_cast<T*>(std::as_const(*this).find(name)); }
    const T& at(std::string_view name) const
    {
        if (const T* e = find(name))
            return *e;
        throw Error(std::string(kind_) + " '" + std::string(name) + "': not in the object");
    }
    T& at(std::string_view name) { return const_cast<T&>(std::as_const(*this).at(name)); }
    bool contains(std::string_view name) const { return find(name) != nullptr; }
    // Refuses a second element of the same name: it would be a second kernel object under one name.
    T& add(T item)
    {
        if (contains(item.name))
            throw Error(std::string(kind_) + " '" + item.name + "': defined twice");
        items_.push_back(std::move(item));
        return items_.back();
    }
    // Drops the element of that name (its kernel object with it, for a loaded one); whether there was one.
    bool erase(std::string_view name)
    {
        const auto n = std::erase_if(items_, [&](const T& e) { return e.name == name; });
        return n != 0;
    }

    size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    auto begin() const noexcept { return items_.begin(); }
    auto end() const noexcept { return items_.end(); }
    auto begin() noexcept { return items_.begin(); }
    auto end() noexcept { return items_.end(); }

private:
    const char* kind_;
    std::vector<T> items_;
};

struct MapEntry {
    std::vector<std::byte> key;
    std::vector<std::byte> value;
};

struct MapSpec {
    std::string name;
    uint32_t type = 0;
    uint32_t key_size = 0;
    uint32_t value_size = 0;
    uint32_t max_entries = 0;
    uint32_t flags = 0;
    // The kernel creates this type only with BTF for its key and value (socket storage).
    bool needs_btf = false;
    // The key and value types in CollectionSpec::btf (0: none), so that bpftool prints entries field by field.
    uint32_t btf_key_type_id = 0;
    uint32_t btf_value_type_id = 0;
    // Written with BPF_MAP_UPDATE_ELEM right after the map is created, before any program can see it
    // (cilium/ebpf MapSpec.Contents, libbpf bpf_map__set_initial_value).
    std::vector<MapEntry> contents;

    // Sets one entry of `contents` from plain values of exactly key_size and value_size bytes.
    template <typename K, typename V> void set(const K& key, const V& value)
    {
        set_bytes(std::as_bytes(std::span(&key, 1)), std::as_bytes(std::span(&value, 1)));
    }
    void set_bytes(std::span<const std::byte> key, std::span<const std::byte> value);
};

// An ld_imm64 at instruction `insn` that must be patched with the fd of the map named `map`.
struct MapReference {
    size_t insn = 0;
    std::string map;
};

struct ProgramSpec {
    std::string name;    // the function symbol
    std::string section; // the ELF section, which chose the types below
    uint32_t type = 0;
    uint32_t expected_attach_type = 0;
    // How the program is attached: the attach type of BPF_LINK_CREATE / BPF_PROG_ATTACH.
    uint32_t attach_type = 0;
    // Tracing programs: what they attach to, by name in the kernel's BTF (a function for fentry/fexit, a
    // tracepoint for tp_btf, an iterator target for iter), from the section name ("fexit/sock_recvmsg",
    // "iter/sockmap").
    std::string attach_to;
    std::vector<bpf_insn> insns;
    std::vector<MapReference> maps;
    // From .BTF.ext: loaded with the program (source lines in verifier logs and bpftool), and the CO-RE
    // relocations resolved against the kernel's BTF before load.
    std::vector<bpf_func_info> func_info;
    std::vector<bpf_line_info> line_info;
    std::vector<elf::BtfCoreRelo> core_relos;
};

struct CollectionSpec {
    std::string license;
    // The object's BTF (fixed up), loaded with BPF_BTF_LOAD for the maps and programs that name its types.
    std::optional<elf::Btf> btf;
    ByName<MapSpec> maps{"map"};
    ByName<ProgramSpec> programs{"program"};

    // aya's EbpfLoader::set_max_entries: the capacity of one map, before load.
    void set_max_entries(std::string_view map, uint32_t max_entries);
    // The same spec with only the programs named (those it has; the order stays the object's) and the maps they
    // refer to, so that a load creates and loads nothing else (cilium/ebpf's LoadAndAssign loads what is asked).
    CollectionSpec subset(std::span<const std::string> programs) const;
};

// The open phase (libbpf bpf_object__open, cilium LoadCollectionSpec): from the parsed object to what the loader
// will do, refusing by name every program section, map type and relocation it does not support. No syscall.
CollectionSpec make_collection_spec(elf::ObjectSpec object);
// elf::parse_object + make_collection_spec.
CollectionSpec open_object(std::span<const std::byte> bytes);

} // namespace sockredir::ebpf
