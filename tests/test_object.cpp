// Unit tests of elf/object (parse_object): programs, maps, license and map relocations, and what it refuses.
#include <doctest/doctest.h>

#include <elf.h>

#include <cstddef>
#include <string>

#include "bpf/sockredir_shared.h"
#include "elf/object.hpp"
#include "elf/reader.hpp"
#include "loader/app/embedded.hpp"
#include "loader/base/error.hpp"
#include "tests/elf_builder.hpp"

using namespace sockredir;
using namespace sockredir::base;
using namespace sockredir::app;
using namespace sockredir::test;

namespace {

constexpr uint8_t kLdImm64 = BPF_LD | BPF_IMM | BPF_DW;

elf::ObjectSpec parse(const Bytes& bytes)
{
    return elf::parse_object(bytes);
}

// Builds the recipe, then rewrites relocation `entry` of the REL section of program section `section`.
Bytes with_rel(const ObjectRecipe::Parts& p, const std::string& section, uint32_t entry,
               const std::function<void(Elf64_Rel&)>& change)
{
    Bytes bytes = p.builder.build();
    patch_rel(bytes, p.builder.rel_index(p.section_of.at(section)), entry, change);
    return bytes;
}

void set_symbol(Elf64_Rel& r, uint32_t symbol)
{
    r.r_info = ELF64_R_INFO(symbol, ELF64_R_TYPE(r.r_info));
}
void set_type(Elf64_Rel& r, uint32_t type)
{
    r.r_info = ELF64_R_INFO(ELF64_R_SYM(r.r_info), type);
}

} // namespace

// --- the real object ------------------------------------------------------------------------------------------

TEST_CASE("the embedded object is the one the build wrote to SOCKREDIR_BPF_OBJECT")
{
    const auto from_env = bpf_object_from_env();
    const auto embedded = embedded_object();
    REQUIRE_FALSE(embedded.empty());
    REQUIRE_MESSAGE(from_env.has_value(), "SOCKREDIR_BPF_OBJECT must name the built BPF object (meson test sets it)");
    REQUIRE(from_env->size() == embedded.size());
    CHECK(std::equal(from_env->begin(), from_env->end(), embedded.begin()));
}

TEST_CASE("the real object holds sockredir_sockops in section sockops, sockredir_msg in sk_msg, and the two "
          "eviction programs")
{
    const auto obj = parse(real_object());
    // And the three receive-path observers (fexit on tcp_bpf_recvmsg, tp_btf, fexit on sock_recvmsg) and the two
    // option hooks, which test_contract.cpp checks.
    REQUIRE(obj.programs.size() == 9);
    const auto* sockops = obj.find_program(SOCKREDIR_PROG_SOCKOPS);
    const auto* msg = obj.find_program(SOCKREDIR_PROG_MSG);
    const auto* evict = obj.find_program(SOCKREDIR_PROG_EVICT);
    const auto* unmap = obj.find_program(SOCKREDIR_PROG_UNMAP);
    REQUIRE(sockops != nullptr);
    REQUIRE(msg != nullptr);
    REQUIRE(evict != nullptr);
    REQUIRE(unmap != nullptr);
    CHECK(sockops->section == "sockops");
    CHECK(msg->section == "sk_msg");
    CHECK(evict->section == "iter/sockmap");
    CHECK(unmap->section == "tc");
    CHECK(obj.find_program("nope") == nullptr);
}

TEST_CASE("the real object's program instructions are exactly the bytes of their sections")
{
    const Bytes bytes = real_object();
    const auto file = elf::read(bytes);
    const auto obj = parse(bytes);
    for (const auto& p : obj.programs) {
        CAPTURE(p.name);
        const auto* s = file.find_section(p.section);
        REQUIRE(s != nullptr);
        REQUIRE(p.insns.size() * sizeof(bpf_insn) == s->data.size());
        CHECK(std::memcmp(p.insns.data(), s->data.data(), s->data.size()) == 0);
        // A program ends in exit, or in a jump back to code before it (the verifier's rule, check_subprogs: clang
        // may put a loop's or a branch's tail after the exit).
        const auto last = p.insns.back();
        CHECK((last.code == (BPF_JMP | BPF_EXIT) || (last.code == (BPF_JMP | BPF_JA) && last.off < 0)));
    }
}

TEST_CASE("the real object's license is the non-empty string of its license section")
{
    const Bytes bytes = real_object();
    const auto obj = parse(bytes);
    CHECK_FALSE(obj.license.empty());
    const auto file = elf::read(bytes);
    const auto* s = file.find_section("license");
    REQUIRE(s != nullptr);
    REQUIRE(s->data.size() == obj.license.size() + 1);
    CHECK(std::memcmp(s->data.data(), obj.license.data(), obj.license.size()) == 0);
    CHECK(s->data.back() == std::byte{0});
}

TEST_CASE("the real object holds the seven maps with the shapes of bpf/sockredir_shared.h")
{
    const auto obj = parse(real_object());
    REQUIRE(obj.maps.size() == 7);
    const auto* socks = obj.find_map(SOCKREDIR_MAP_SOCKS);
    const auto* counters = obj.find_map(SOCKREDIR_MAP_COUNTERS);
    const auto* config = obj.find_map(SOCKREDIR_MAP_CONFIG);
    const auto* path = obj.find_map(SOCKREDIR_MAP_SOCK_STATE);
    REQUIRE(socks != nullptr);
    REQUIRE(counters != nullptr);
    REQUIRE(config != nullptr);
    REQUIRE(path != nullptr);
    CHECK(obj.find_map("nope") == nullptr);

    CHECK(socks->type == BPF_MAP_TYPE_SOCKHASH);
    CHECK(socks->key_size == sizeof(sockredir_key));
    CHECK(socks->value_size == sizeof(uint64_t));
    CHECK(socks->max_entries == SOCKREDIR_DEFAULT_MAX_SOCKETS);
    CHECK(socks->flags == 0);

    CHECK(counters->type == BPF_MAP_TYPE_PERCPU_ARRAY);
    CHECK(counters->key_size == sizeof(uint32_t));
    CHECK(counters->value_size == sizeof(uint64_t));
    CHECK(counters->max_entries == SOCKREDIR_COUNTER_MAX);

    CHECK(config->type == BPF_MAP_TYPE_ARRAY);
    CHECK(config->key_size == sizeof(uint32_t));
    CHECK(config->value_size == sizeof(sockredir_config));
    CHECK(config->max_entries == 1);

    CHECK(path->type == BPF_MAP_TYPE_SK_STORAGE);
    CHECK(path->key_size == sizeof(int));
    CHECK(path->value_size == sizeof(sockredir_sock));
    CHECK(path->max_entries == 0);
    CHECK(path->flags == BPF_F_NO_PREALLOC);

    const auto* flows = obj.find_map(SOCKREDIR_MAP_FLOWS);
    REQUIRE(flows != nullptr);
    CHECK(flows->type == BPF_MAP_TYPE_HASH);
    CHECK(flows->key_size == sizeof(sockredir_key));
    CHECK(flows->value_size == sizeof(sockredir_flow));
    CHECK(flows->max_entries == SOCKREDIR_DEFAULT_MAX_SOCKETS);
    CHECK(flows->flags == BPF_F_NO_PREALLOC);
    const auto* learned = obj.find_map(SOCKREDIR_MAP_LEARNED);
    REQUIRE(learned != nullptr);
    CHECK(learned->type == BPF_MAP_TYPE_LRU_HASH);
    CHECK(learned->key_size == sizeof(sockredir_learn_key));
    CHECK(learned->max_entries == SOCKREDIR_LEARNED_ENTRIES);
    const auto* batch = obj.find_map(SOCKREDIR_MAP_UNMAP_BATCH);
    REQUIRE(batch != nullptr);
    CHECK(batch->type == BPF_MAP_TYPE_ARRAY);
    CHECK(batch->key_size == sizeof(uint32_t));
    CHECK(batch->value_size == sizeof(sockredir_unmap_batch));
    CHECK(batch->max_entries == 1);
}

TEST_CASE("every map relocation of the real object is on an ld_imm64 and names the map of its ELF symbol")
{
    const Bytes bytes = real_object();
    const auto file = elf::read(bytes);
    const auto obj = parse(bytes);
    size_t checked = 0;
    for (const auto& p : obj.programs) {
        CAPTURE(p.name);
        const auto* s = file.find_section(p.section);
        REQUIRE(s != nullptr);
        const elf::RelocationSection* rs = nullptr;
        for (const auto& r : file.relocations)
            if (r.target == s->index)
                rs = &r;
        REQUIRE(rs != nullptr);
        REQUIRE(p.relocations.size() == rs->entries.size());
        CHECK_FALSE(p.relocations.empty());
        for (size_t i = 0; i < p.relocations.size(); ++i) {
            const auto& r = p.relocations[i];
            CAPTURE(i);
            REQUIRE(r.insn + 1 < p.insns.size());
            CHECK(p.insns[r.insn].code == kLdImm64);
            REQUIRE(r.map < obj.maps.size());
            CHECK(r.insn * sizeof(bpf_insn) == rs->entries[i].offset);
            CHECK(obj.maps[r.map].name == file.symbols[rs->entries[i].symbol].name);
            ++checked;
        }
    }
    CHECK(checked >= 4);
}

// --- built objects: what is accepted --------------------------------------------------------------------------

TEST_CASE("a built sockredir-shaped object parses into its license, maps, programs and relocations")
{
    const ObjectRecipe recipe;
    const auto obj = parse(recipe.build());
    CHECK(obj.license == "GPL");
    REQUIRE(obj.maps.size() == recipe.maps.size());
    for (size_t i = 0; i < recipe.maps.size(); ++i) {
        CHECK(obj.maps[i].name == recipe.maps[i].name);
        CHECK(obj.maps[i].type == recipe.maps[i].def.type);
        CHECK(obj.maps[i].key_size == recipe.maps[i].def.key_size);
        CHECK(obj.maps[i].value_size == recipe.maps[i].def.value_size);
        CHECK(obj.maps[i].max_entries == recipe.maps[i].def.max_entries);
        CHECK(obj.maps[i].flags == recipe.maps[i].def.map_flags);
    }
    REQUIRE(obj.programs.size() == 2);
    const auto& msg = obj.programs[1];
    CHECK(msg.name == SOCKREDIR_PROG_MSG);
    CHECK(msg.section == "sk_msg");
    REQUIRE(msg.relocations.size() == 3);
    // map_refs: config, sock_hash, sock_state; each ld_imm64 takes two slots.
    CHECK(msg.relocations[0].insn == 0);
    CHECK(obj.maps[msg.relocations[0].map].name == SOCKREDIR_MAP_CONFIG);
    CHECK(msg.relocations[1].insn == 2);
    CHECK(obj.maps[msg.relocations[1].map].name == SOCKREDIR_MAP_SOCKS);
    CHECK(msg.relocations[2].insn == 4);
    CHECK(obj.maps[msg.relocations[2].map].name == SOCKREDIR_MAP_SOCK_STATE);
}

TEST_CASE("an empty executable section without a function, like clang's .text, is not a program")
{
    auto p = ObjectRecipe{}.parts();
    p.builder.add_section(".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, {});
    const auto obj = parse(p.builder.build());
    CHECK(obj.programs.size() == 2);
}

TEST_CASE("a relocation against the maps section symbol finds the map by the instruction's immediate")
{
    auto p = ObjectRecipe{}.parts();
    const auto maps = p.section_of.at("maps");
    const auto section_sym = p.builder.add_symbol({"", static_cast<uint16_t>(maps), 0, 0, STT_SECTION, STB_LOCAL});
    Bytes bytes = with_rel(p, "sockops", 0, [&](Elf64_Rel& r) { set_symbol(r, section_sym); });
    // The first ld_imm64 of sockops now addresses "maps" + imm; point imm at counters (the second map).
    const auto sockops = get_shdr(bytes, p.section_of.at("sockops"));
    const int32_t counters_offset = sizeof(elf::LegacyMapDef);
    store(bytes, sockops.sh_offset + offsetof(bpf_insn, imm), counters_offset);
    const auto obj = parse(bytes);
    REQUIRE(obj.programs[0].relocations.size() == 2);
    CHECK(obj.maps[obj.programs[0].relocations[0].map].name == SOCKREDIR_MAP_COUNTERS);

    store(bytes, sockops.sh_offset + offsetof(bpf_insn, imm), int32_t{4});
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section '.relsockops': relocation #0: no map starts at offset 4 of "
                                           "section 'maps'"),
                         Error);
}

// --- built objects: what is refused ----------------------------------------------------------------------------

TEST_CASE("an object without a license section is refused")
{
    ObjectRecipe recipe;
    recipe.license.reset();
    CHECK_THROWS_WITH_AS(parse(recipe.build()), doctest::Contains("section 'license': missing"), Error);
}

TEST_CASE("an empty license string is refused")
{
    ObjectRecipe recipe;
    recipe.license = "";
    CHECK_THROWS_WITH_AS(parse(recipe.build()), doctest::Contains("section 'license': empty string"), Error);
}

TEST_CASE("a license that is not NUL-terminated is refused")
{
    auto p = ObjectRecipe{}.parts();
    Bytes bytes = p.builder.build();
    const auto license = get_shdr(bytes, p.section_of.at("license"));
    store(bytes, license.sh_offset + license.sh_size - 1, 'L');
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("section 'license': string is not NUL-terminated"), Error);
}

TEST_CASE("a license section with no bytes is refused")
{
    auto p = ObjectRecipe{}.parts();
    Bytes bytes = p.builder.build();
    patch_shdr(bytes, p.section_of.at("license"), [](Elf64_Shdr& h) { h.sh_size = 0; });
    // Exactly this message: not the "empty string" one of a license of only a NUL.
    CHECK_THROWS_WITH_AS(parse(bytes), "section 'license': empty", Error);
}

TEST_CASE("a program with no instructions is refused")
{
    auto p = ObjectRecipe{}.parts();
    const auto empty = p.builder.add_section("sockops_empty", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, {});
    p.builder.add_symbol({"hollow", static_cast<uint16_t>(empty), 0, 0, STT_FUNC, STB_GLOBAL});
    CHECK_THROWS_WITH_AS(parse(p.builder.build()),
                         doctest::Contains("section 'sockops_empty': program 'hollow' has no instructions"), Error);
}

TEST_CASE("a program section whose size is not a whole number of instructions is refused")
{
    auto p = ObjectRecipe{}.parts();
    Bytes bytes = p.builder.build();
    patch_shdr(bytes, p.section_of.at("sk_msg"), [](Elf64_Shdr& h) { h.sh_size -= 4; });
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section 'sk_msg': size 60 is not a multiple of the instruction size (8)"),
                         Error);
}

TEST_CASE("an object that is not for the BPF machine is refused")
{
    auto p = ObjectRecipe{}.parts();
    p.builder.machine = EM_X86_64;
    CHECK_THROWS_WITH_AS(parse(p.builder.build()), doctest::Contains("ELF header: machine 62 is not BPF (247)"), Error);
}

TEST_CASE("an object without any program section is refused")
{
    ObjectRecipe recipe;
    recipe.programs.clear();
    CHECK_THROWS_WITH_AS(parse(recipe.build()), doctest::Contains("ELF file: no program sections"), Error);
}

TEST_CASE("a program section with two functions is refused as a bpf-to-bpf call")
{
    auto p = ObjectRecipe{}.parts();
    p.builder.add_symbol({"helper", static_cast<uint16_t>(p.section_of.at("sockops")), 16, 8, STT_FUNC, STB_GLOBAL});
    CHECK_THROWS_WITH_AS(parse(p.builder.build()),
                         doctest::Contains("section 'sockops': holds more than one function (sockredir_sockops, "
                                           "helper); bpf-to-bpf calls are not supported"),
                         Error);
}

TEST_CASE("a program section without a function symbol is refused")
{
    auto p = ObjectRecipe{}.parts();
    p.builder.add_program("orphan", "placeholder", {insn::mov_imm(0, 0), insn::exit_insn()});
    Bytes bytes = p.builder.build();
    // Turn the new function symbol (the last one) into an object symbol.
    const auto symtab = get_shdr(bytes, p.builder.symtab_index());
    const uint64_t last = symtab.sh_offset + symtab.sh_size - sizeof(Elf64_Sym);
    auto sym = load<Elf64_Sym>(bytes, last);
    sym.st_info = ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT);
    store(bytes, last, sym);
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("section 'orphan': no function symbol names the program"),
                         Error);
}

TEST_CASE("a program whose function does not start its section is refused")
{
    auto p = ObjectRecipe{}.parts();
    Bytes bytes = p.builder.build();
    // Symbol 1 is sockredir_sockops.
    const auto symtab = get_shdr(bytes, p.builder.symtab_index());
    auto sym = load<Elf64_Sym>(bytes, symtab.sh_offset + sizeof(Elf64_Sym));
    sym.st_value = 8;
    store(bytes, symtab.sh_offset + sizeof(Elf64_Sym), sym);
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section 'sockops': program 'sockredir_sockops' does not start the section"),
                         Error);
}

TEST_CASE("an unknown relocation type is refused")
{
    const auto p = ObjectRecipe{}.parts();
    const auto bytes = with_rel(p, "sockops", 1, [](Elf64_Rel& r) { set_type(r, 77); });
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section '.relsockops': relocation #1: type 77 (unknown) is not supported"),
                         Error);
}

TEST_CASE("an R_BPF_64_32 relocation is refused by name as a bpf-to-bpf call")
{
    const auto p = ObjectRecipe{}.parts();
    const auto bytes = with_rel(p, "sk_msg", 0, [](Elf64_Rel& r) { set_type(r, R_BPF_64_32); });
    CHECK_THROWS_WITH_AS(
        parse(bytes),
        doctest::Contains("section '.relsk_msg': relocation #0: type 10 (R_BPF_64_32, a bpf-to-bpf call) "
                          "is not supported"),
        Error);
}

TEST_CASE("the other BPF relocation types are refused by name")
{
    const auto p = ObjectRecipe{}.parts();
    for (const auto& [type, name] : {std::pair{0U, "R_BPF_NONE"}, std::pair{2U, "R_BPF_64_ABS64"},
                                     std::pair{3U, "R_BPF_64_ABS32"}, std::pair{4U, "R_BPF_64_NODYLD32"}}) {
        CAPTURE(type);
        const auto bytes = with_rel(p, "sk_msg", 0, [&](Elf64_Rel& r) { set_type(r, type); });
        const std::string expected = "type " + std::to_string(type) + " (" + name + ") is not supported";
        CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains(expected.c_str()), Error);
    }
}

TEST_CASE("RELA relocations for a program are refused")
{
    const auto p = ObjectRecipe{}.parts();
    Bytes bytes = p.builder.build();
    const auto rel = p.builder.rel_index(p.section_of.at("sockops"));
    // Two Elf64_Rel (32 bytes) read as one Elf64_Rela plus 8 bytes: shrink to a whole Rela.
    patch_shdr(bytes, rel, [](Elf64_Shdr& h) {
        h.sh_type = SHT_RELA;
        h.sh_entsize = sizeof(Elf64_Rela);
        h.sh_size = sizeof(Elf64_Rela);
    });
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section '.relsockops': RELA relocations for a program are not supported"),
                         Error);
}

TEST_CASE("a relocation offset that is not on an instruction boundary is refused")
{
    const auto p = ObjectRecipe{}.parts();
    const auto bytes = with_rel(p, "sockops", 0, [](Elf64_Rel& r) { r.r_offset = 4; });
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section '.relsockops': relocation #0: offset 4 is not on an instruction "
                                           "boundary"),
                         Error);
}

TEST_CASE("a relocation on the last instruction, where no ld_imm64 fits, is refused")
{
    const auto p = ObjectRecipe{}.parts();
    // sockops: ld_imm64, ld_imm64, mov, exit = 6 instructions; the last starts at 40.
    const auto bytes = with_rel(p, "sockops", 0, [](Elf64_Rel& r) { r.r_offset = 40; });
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section '.relsockops': relocation #0: offset 40 is outside section "
                                           "'sockops'"),
                         Error);
}

TEST_CASE("a relocation that is not on an ld_imm64 instruction is refused")
{
    const auto p = ObjectRecipe{}.parts();
    // Instruction 4 of sockops is `r0 = 1`.
    const auto bytes = with_rel(p, "sockops", 1, [](Elf64_Rel& r) { r.r_offset = 32; });
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section '.relsockops': relocation #1: instruction 4 is not a 64-bit "
                                           "immediate load"),
                         Error);
    // The second slot of an ld_imm64 is not one either.
    const auto second = with_rel(p, "sockops", 1, [](Elf64_Rel& r) { r.r_offset = 8; });
    CHECK_THROWS_WITH_AS(parse(second), doctest::Contains("instruction 1 is not a 64-bit immediate load"), Error);
}

TEST_CASE("a relocation against .data or .rodata is refused because global data is not supported")
{
    for (const char* section : {".data", ".rodata", ".bss"}) {
        CAPTURE(section);
        auto p = ObjectRecipe{}.parts();
        const uint32_t type = std::string(section) == ".bss" ? SHT_NOBITS : SHT_PROGBITS;
        const auto index = p.builder.add_section(section, type, SHF_ALLOC | SHF_WRITE, to_bytes("12345678"));
        const auto sym =
            p.builder.add_symbol({"global_var", static_cast<uint16_t>(index), 0, 4, STT_OBJECT, STB_GLOBAL});
        const auto bytes = with_rel(p, "sk_msg", 2, [&](Elf64_Rel& r) { set_symbol(r, sym); });
        const std::string expected = "section '.relsk_msg': relocation #2: refers to symbol 'global_var' in section '" +
                                     std::string(section) + "'; only maps are supported (no global data, no calls)";
        CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains(expected.c_str()), Error);
    }
}

TEST_CASE("a relocation against an undefined symbol is refused")
{
    auto p = ObjectRecipe{}.parts();
    const auto sym = p.builder.add_symbol({"bpf_kfunc_thing", SHN_UNDEF, 0, 0, STT_NOTYPE, STB_GLOBAL});
    const auto bytes = with_rel(p, "sockops", 0, [&](Elf64_Rel& r) { set_symbol(r, sym); });
    CHECK_THROWS_WITH_AS(parse(bytes),
                         doctest::Contains("section '.relsockops': relocation #0: refers to undefined symbol "
                                           "'bpf_kfunc_thing' (extern symbols and kfuncs are not supported)"),
                         Error);
}

TEST_CASE("a map definition of the wrong size is refused")
{
    ObjectRecipe recipe;
    recipe.maps[2].symbol_size = 16;
    CHECK_THROWS_WITH_AS(parse(recipe.build()),
                         doctest::Contains("section 'maps': map 'config': definition is 16 bytes, expected 20"), Error);
}

TEST_CASE("a map definition that lies outside the maps section is refused")
{
    auto p = ObjectRecipe{}.parts();
    const auto maps = ObjectRecipe{}.maps.size();
    p.builder.add_symbol({"beyond", static_cast<uint16_t>(p.section_of.at("maps")),
                          maps * sizeof(elf::LegacyMapDef), sizeof(elf::LegacyMapDef), STT_OBJECT, STB_GLOBAL});
    const auto end = std::to_string(maps * sizeof(elf::LegacyMapDef));
    const std::string expected =
        "section 'maps': map 'beyond': definition at offset " + end + " lies outside the section (" + end + " bytes)";
    CHECK_THROWS_WITH_AS(parse(p.builder.build()), doctest::Contains(expected.c_str()), Error);
}

TEST_CASE("a misaligned map definition is refused")
{
    auto p = ObjectRecipe{}.parts();
    p.builder.add_symbol({"askew", static_cast<uint16_t>(p.section_of.at("maps")), 2, sizeof(elf::LegacyMapDef),
                          STT_OBJECT, STB_GLOBAL});
    CHECK_THROWS_WITH_AS(parse(p.builder.build()),
                         doctest::Contains("section 'maps': map 'askew': definition at offset 2 is misaligned"), Error);
}

TEST_CASE("two maps at the same offset are refused")
{
    auto p = ObjectRecipe{}.parts();
    p.builder.add_symbol({"alias", static_cast<uint16_t>(p.section_of.at("maps")), sizeof(elf::LegacyMapDef),
                          sizeof(elf::LegacyMapDef), STT_OBJECT, STB_GLOBAL});
    CHECK_THROWS_WITH_AS(parse(p.builder.build()),
                         doctest::Contains("section 'maps': map 'alias': shares its offset with another map"), Error);
}

TEST_CASE("a map symbol without a name is refused")
{
    auto p = ObjectRecipe{}.parts();
    const auto sym = p.builder.add_symbol(
        {"", static_cast<uint16_t>(p.section_of.at("maps")), 0, sizeof(elf::LegacyMapDef), STT_OBJECT, STB_GLOBAL});
    const std::string expected = "section 'maps': map symbol #" + std::to_string(sym) + " has no name";
    CHECK_THROWS_WITH_AS(parse(p.builder.build()), doctest::Contains(expected.c_str()), Error);
}

TEST_CASE("a maps section that is not PROGBITS is refused")
{
    auto p = ObjectRecipe{}.parts();
    Bytes bytes = p.builder.build();
    patch_shdr(bytes, p.section_of.at("maps"), [](Elf64_Shdr& h) { h.sh_type = SHT_NOBITS; });
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("section 'maps': is not PROGBITS (type 8)"), Error);
}

TEST_CASE("a map relocation in an object without a maps section is refused")
{
    ObjectRecipe recipe;
    recipe.maps.clear();
    recipe.programs = {{"sockops", "p", {}}};
    auto p = recipe.parts();
    // Reference the license symbol from a fresh ld_imm64 program.
    const auto insns = insn::program(insn::ld_imm64(1, 0), insn::exit_insn());
    const auto sec = p.builder.add_program("sk_msg", "q", insns);
    p.builder.add_rel(sec, {0, R_BPF_64_64, p.symbol_of.at("_license")});
    CHECK_THROWS_WITH_AS(parse(p.builder.build()),
                         doctest::Contains("refers to symbol '_license' in section 'license'; only maps are supported"),
                         Error);
}
