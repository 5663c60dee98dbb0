// Test-only ELF64 BPF object builder and byte patcher: every layout from <elf.h>, every access bounds-checked.
#include "tests/elf_builder.hpp"

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "loader/app/embedded.hpp"

namespace sockredir::test {

namespace {

void pad_to(Bytes& bytes, uint64_t alignment)
{
    if (alignment > 1)
        while (bytes.size() % alignment != 0)
            bytes.push_back(std::byte{0});
}

// A string table under construction: offset 0 is the empty string.
class StringTable {
public:
    uint32_t add(const std::string& s)
    {
        if (s.empty())
            return 0;
        const auto at = static_cast<uint32_t>(bytes_.size());
        for (char c : s)
            bytes_.push_back(static_cast<std::byte>(c));
        bytes_.push_back(std::byte{0});
        return at;
    }
    const Bytes& bytes() const { return bytes_; }

private:
    Bytes bytes_{std::byte{0}};
};

} // namespace

Bytes to_bytes(std::string_view s)
{
    Bytes out(s.size());
    if (!s.empty())
        std::memcpy(out.data(), s.data(), s.size());
    return out;
}

Bytes insns_bytes(const std::vector<bpf_insn>& insns)
{
    Bytes out;
    for (const auto& insn : insns)
        append(out, insn);
    return out;
}

Bytes truncated(std::span<const std::byte> bytes, size_t length)
{
    if (length > bytes.size())
        throw std::out_of_range("truncated: length past the end");
    return Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(length));
}

Elf64_Ehdr get_ehdr(std::span<const std::byte> bytes)
{
    return load<Elf64_Ehdr>(bytes, 0);
}

void set_ehdr(Bytes& bytes, const Elf64_Ehdr& ehdr)
{
    store(bytes, 0, ehdr);
}

void patch_ehdr(Bytes& bytes, const std::function<void(Elf64_Ehdr&)>& change)
{
    auto ehdr = get_ehdr(bytes);
    change(ehdr);
    set_ehdr(bytes, ehdr);
}

uint64_t shdr_offset(std::span<const std::byte> bytes, uint32_t index)
{
    const auto ehdr = get_ehdr(bytes);
    if (index >= ehdr.e_shnum)
        throw std::out_of_range("test: section index past e_shnum");
    return ehdr.e_shoff + uint64_t{index} * sizeof(Elf64_Shdr);
}

Elf64_Shdr get_shdr(std::span<const std::byte> bytes, uint32_t index)
{
    return load<Elf64_Shdr>(bytes, shdr_offset(bytes, index));
}

void set_shdr(Bytes& bytes, uint32_t index, const Elf64_Shdr& shdr)
{
    store(bytes, shdr_offset(bytes, index), shdr);
}

void patch_shdr(Bytes& bytes, uint32_t index, const std::function<void(Elf64_Shdr&)>& change)
{
    auto shdr = get_shdr(bytes, index);
    change(shdr);
    set_shdr(bytes, index, shdr);
}

uint32_t section_index(std::span<const std::byte> bytes, std::string_view name)
{
    const auto ehdr = get_ehdr(bytes);
    const auto names = get_shdr(bytes, ehdr.e_shstrndx);
    for (uint32_t i = 1; i < ehdr.e_shnum; ++i) {
        const auto shdr = get_shdr(bytes, i);
        std::string found;
        for (uint64_t at = names.sh_offset + shdr.sh_name;; ++at) {
            const auto c = load<char>(bytes, at);
            if (c == '\0')
                break;
            found.push_back(c);
        }
        if (found == name)
            return i;
    }
    throw std::runtime_error("test: no section '" + std::string(name) + "'");
}

Elf64_Rel get_rel(std::span<const std::byte> bytes, uint32_t rel_index, uint32_t entry)
{
    const auto shdr = get_shdr(bytes, rel_index);
    if (shdr.sh_type != SHT_REL || uint64_t{entry} * sizeof(Elf64_Rel) >= shdr.sh_size)
        throw std::out_of_range("test: no such REL entry");
    return load<Elf64_Rel>(bytes, shdr.sh_offset + uint64_t{entry} * sizeof(Elf64_Rel));
}

void patch_rel(Bytes& bytes, uint32_t rel_index, uint32_t entry, const std::function<void(Elf64_Rel&)>& change)
{
    auto rel = get_rel(bytes, rel_index, entry);
    change(rel);
    store(bytes, get_shdr(bytes, rel_index).sh_offset + uint64_t{entry} * sizeof(Elf64_Rel), rel);
}

uint32_t ElfBuilder::add_section(std::string name, uint32_t type, uint64_t flags, Bytes data, uint64_t addralign)
{
    sections_.push_back({std::move(name), type, flags, std::move(data), addralign});
    return static_cast<uint32_t>(sections_.size());
}

uint32_t ElfBuilder::add_symbol(SymbolSpec symbol)
{
    symbols_.push_back(std::move(symbol));
    return static_cast<uint32_t>(symbols_.size());
}

void ElfBuilder::add_rel(uint32_t target_section, RelSpec rel)
{
    rels_[target_section].push_back(rel);
}

uint32_t ElfBuilder::add_program(std::string section, const std::string& function, const std::vector<bpf_insn>& insns)
{
    const auto data = insns_bytes(insns);
    const uint64_t size = data.size();
    const auto index = add_section(std::move(section), SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, data);
    add_symbol({function, static_cast<uint16_t>(index), 0, size, STT_FUNC, STB_GLOBAL});
    return index;
}

uint32_t ElfBuilder::rel_index(uint32_t target_section) const
{
    uint32_t index = static_cast<uint32_t>(sections_.size()) + 1;
    for (const auto& [target, entries] : rels_) {
        if (target == target_section)
            return index;
        ++index;
    }
    throw std::out_of_range("test: no relocations for that section");
}

uint32_t ElfBuilder::symtab_index() const
{
    return static_cast<uint32_t>(sections_.size() + rels_.size()) + 1;
}
uint32_t ElfBuilder::strtab_index() const
{
    return symtab_index() + 1;
}
uint32_t ElfBuilder::shstrtab_index() const
{
    return symtab_index() + 2;
}

Bytes ElfBuilder::build() const
{
    // All section headers, index 0 the null one; offsets are filled in as the data is laid out.
    std::vector<Elf64_Shdr> shdrs(1);
    StringTable shstrtab;
    Bytes out(sizeof(Elf64_Ehdr));

    auto place = [&](const std::string& name, uint32_t type, uint64_t flags, const Bytes& data, uint64_t align) {
        Elf64_Shdr shdr{};
        shdr.sh_name = shstrtab.add(name);
        shdr.sh_type = type;
        shdr.sh_flags = flags;
        pad_to(out, align);
        shdr.sh_offset = out.size();
        shdr.sh_size = data.size();
        shdr.sh_addralign = align;
        out.insert(out.end(), data.begin(), data.end());
        shdrs.push_back(shdr);
        return shdrs.size() - 1;
    };

    for (const auto& s : sections_)
        place(s.name, s.type, s.flags, s.data, s.addralign);

    for (const auto& [target, entries] : rels_) {
        Bytes data;
        for (const auto& r : entries) {
            Elf64_Rel rel{};
            rel.r_offset = r.offset;
            rel.r_info = ELF64_R_INFO(r.symbol, r.type);
            append(data, rel);
        }
        const std::string target_name = target >= 1 && target <= sections_.size() ? sections_[target - 1].name : "";
        const auto i = place(".rel" + target_name, SHT_REL, SHF_INFO_LINK, data, 8);
        shdrs[i].sh_link = symtab_index();
        shdrs[i].sh_info = target;
        shdrs[i].sh_entsize = sizeof(Elf64_Rel);
    }

    StringTable strtab;
    Bytes symtab;
    append(symtab, Elf64_Sym{});
    uint32_t first_global = 0;
    for (size_t i = 0; i < symbols_.size(); ++i) {
        const auto& s = symbols_[i];
        Elf64_Sym sym{};
        sym.st_name = strtab.add(s.name);
        sym.st_info = static_cast<unsigned char>(ELF64_ST_INFO(s.bind, s.type));
        sym.st_shndx = s.shndx;
        sym.st_value = s.value;
        sym.st_size = s.size;
        append(symtab, sym);
        if (first_global == 0 && s.bind != STB_LOCAL)
            first_global = static_cast<uint32_t>(i) + 1;
    }
    const auto sym_i = place(".symtab", SHT_SYMTAB, 0, symtab, 8);
    shdrs[sym_i].sh_link = strtab_index();
    shdrs[sym_i].sh_info = first_global == 0 ? static_cast<uint32_t>(symbols_.size()) + 1 : first_global;
    shdrs[sym_i].sh_entsize = sizeof(Elf64_Sym);
    place(".strtab", SHT_STRTAB, 0, strtab.bytes(), 1);
    // .shstrtab names itself, so its own name goes in before its bytes are copied.
    const auto own_name = shstrtab.add(".shstrtab");
    const auto names_i = place("", SHT_STRTAB, 0, shstrtab.bytes(), 1);
    shdrs[names_i].sh_name = own_name;

    pad_to(out, 8);
    Elf64_Ehdr ehdr{};
    std::memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
    ehdr.e_ident[EI_CLASS] = ELFCLASS64;
    ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
    ehdr.e_ident[EI_VERSION] = EV_CURRENT;
    ehdr.e_ident[EI_OSABI] = ELFOSABI_NONE;
    ehdr.e_type = elf_type;
    ehdr.e_machine = machine;
    ehdr.e_version = EV_CURRENT;
    ehdr.e_shoff = out.size();
    ehdr.e_ehsize = sizeof(Elf64_Ehdr);
    ehdr.e_shentsize = sizeof(Elf64_Shdr);
    ehdr.e_shnum = static_cast<uint16_t>(shdrs.size());
    ehdr.e_shstrndx = static_cast<uint16_t>(names_i);
    for (const auto& shdr : shdrs)
        append(out, shdr);
    store(out, 0, ehdr);
    return out;
}

std::vector<MapRecipe> ObjectRecipe::default_maps()
{
    return {
        {SOCKREDIR_MAP_SOCKS,
         {BPF_MAP_TYPE_SOCKHASH, sizeof(sockredir_key), sizeof(uint64_t), SOCKREDIR_DEFAULT_MAX_SOCKETS, 0}},
        {SOCKREDIR_MAP_COUNTERS,
         {BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t), sizeof(uint64_t), SOCKREDIR_COUNTER_MAX, 0}},
        {SOCKREDIR_MAP_CONFIG, {BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), sizeof(sockredir_config), 1, 0}},
        {SOCKREDIR_MAP_SOCK_STATE,
         {BPF_MAP_TYPE_SK_STORAGE, sizeof(int), sizeof(sockredir_sock), 0, BPF_F_NO_PREALLOC}},
        {SOCKREDIR_MAP_FLOWS,
         {BPF_MAP_TYPE_HASH, sizeof(sockredir_key), sizeof(sockredir_flow), SOCKREDIR_DEFAULT_MAX_SOCKETS,
          BPF_F_NO_PREALLOC}},
        {SOCKREDIR_MAP_LEARNED,
         {BPF_MAP_TYPE_LRU_HASH, sizeof(sockredir_learn_key), sizeof(uint32_t), SOCKREDIR_LEARNED_ENTRIES, 0}},
    };
}

std::vector<ProgramRecipe> ObjectRecipe::default_programs()
{
    return {
        {"sockops", SOCKREDIR_PROG_SOCKOPS, {SOCKREDIR_MAP_SOCKS, SOCKREDIR_MAP_COUNTERS}},
        {"sk_msg", SOCKREDIR_PROG_MSG, {SOCKREDIR_MAP_CONFIG, SOCKREDIR_MAP_SOCKS, SOCKREDIR_MAP_SOCK_STATE}},
    };
}

ObjectRecipe::Parts ObjectRecipe::parts() const
{
    Parts p;
    ElfBuilder& b = p.builder;
    // Programs first so that their section indexes do not depend on the maps.
    struct Pending {
        uint32_t section;
        std::vector<std::pair<uint64_t, std::string>> refs; // byte offset of the ld_imm64, map name
    };
    std::vector<Pending> pending;
    for (const auto& prog : programs) {
        std::vector<bpf_insn> insns;
        Pending pend{};
        for (const auto& map : prog.map_refs) {
            pend.refs.emplace_back(insns.size() * sizeof(bpf_insn), map);
            insn::append(insns, insn::ld_imm64(1, 0));
        }
        insn::append(insns, insn::mov_imm(0, 1));
        insn::append(insns, insn::exit_insn());
        pend.section = b.add_program(prog.section, prog.function, insns);
        p.section_of[prog.section] = pend.section;
        pending.push_back(std::move(pend));
    }
    // add_program added exactly one symbol per program, in order.
    uint32_t sym = 1;
    for (const auto& prog : programs)
        p.symbol_of[prog.function] = sym++;

    if (!maps.empty()) {
        Bytes data;
        std::vector<uint64_t> offsets;
        for (const auto& m : maps) {
            offsets.push_back(data.size());
            append(data, m.def);
        }
        const auto maps_index = b.add_section("maps", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, data, 4);
        p.section_of["maps"] = maps_index;
        for (size_t i = 0; i < maps.size(); ++i)
            p.symbol_of[maps[i].name] = b.add_symbol({maps[i].name, static_cast<uint16_t>(maps_index), offsets[i],
                                                      maps[i].symbol_size, STT_OBJECT, STB_GLOBAL});
    }
    if (license) {
        auto data = to_bytes(*license);
        data.push_back(std::byte{0});
        const auto size = data.size();
        const auto index = b.add_section("license", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, std::move(data), 1);
        p.section_of["license"] = index;
        p.symbol_of["_license"] =
            b.add_symbol({"_license", static_cast<uint16_t>(index), 0, size, STT_OBJECT, STB_GLOBAL});
    }
    for (const auto& pend : pending)
        for (const auto& [offset, map] : pend.refs) {
            const auto it = p.symbol_of.find(map);
            if (it == p.symbol_of.end())
                throw std::runtime_error("test recipe: program refers to map '" + map + "' that is not in it");
            b.add_rel(pend.section, {offset, R_BPF_64_64, it->second});
        }
    return p;
}

std::optional<Bytes> bpf_object_from_env()
{
    const char* path = std::getenv("SOCKREDIR_BPF_OBJECT");
    if (path == nullptr || *path == '\0')
        return std::nullopt;
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error(std::string("cannot open $SOCKREDIR_BPF_OBJECT ") + path);
    const std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Bytes out(chars.size());
    if (!chars.empty())
        std::memcpy(out.data(), chars.data(), chars.size());
    return out;
}

Bytes real_object()
{
    if (auto from_env = bpf_object_from_env())
        return *from_env;
    const auto embedded = app::embedded_object();
    return Bytes(embedded.begin(), embedded.end());
}

} // namespace sockredir::test
