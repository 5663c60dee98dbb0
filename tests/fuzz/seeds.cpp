// Writes hand-made seed objects for the fuzz corpus, built with tests/elf_builder (valid and subtly broken ones).
#include <cstdio>
#include <fstream>
#include <string>

#include "tests/elf_builder.hpp"

using namespace sockredir::test;

namespace sockredir::app {
// elf_builder.cpp's real_object() falls back to the embedded object, which this small program does not link.
std::span<const std::byte> embedded_object()
{
    return {};
}
} // namespace sockredir::app

namespace {

void write(const std::string& dir, const std::string& name, const Bytes& bytes)
{
    std::ofstream out(dir + "/" + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out)
        throw std::runtime_error("cannot write " + dir + "/" + name);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];

    // A well-formed sockredir-shaped object: plans without error, so the fuzzer starts from the deepest path.
    write(dir, "seed-recipe-valid", ObjectRecipe{}.build());

    ObjectRecipe no_license;
    no_license.license.reset();
    write(dir, "seed-recipe-no-license", no_license.build());

    ObjectRecipe no_maps;
    no_maps.maps.clear();
    for (auto& p : no_maps.programs)
        p.map_refs.clear();
    write(dir, "seed-recipe-no-maps", no_maps.build());

    ObjectRecipe short_map;
    short_map.maps[0].symbol_size = 12;
    write(dir, "seed-recipe-short-map", short_map.build());

    ObjectRecipe extra_program;
    extra_program.programs.push_back({"kprobe/x", "x", {}});
    write(dir, "seed-recipe-extra-program", extra_program.build());

    // A section-symbol relocation (the form clang emits for static maps), a RELA section and a NOBITS section.
    auto parts = ObjectRecipe{}.parts();
    ElfBuilder& b = parts.builder;
    const auto maps = parts.section_of.at("maps");
    const auto section_sym = b.add_symbol({"", static_cast<uint16_t>(maps), 0, 0, STT_SECTION, STB_LOCAL});
    const auto insns = insn::program(insn::ld_imm64(1, 0), insn::mov_imm(0, 0), insn::exit_insn());
    const auto extra = b.add_program("sk_msg/2", "second", insns);
    b.add_rel(extra, {0, R_BPF_64_64, section_sym});
    b.add_section(".bss", SHT_NOBITS, SHF_ALLOC | SHF_WRITE, {});
    write(dir, "seed-builder-mixed", b.build());

    // A RELA section against a program, which parse_object refuses by name.
    auto rela = ObjectRecipe{}.parts();
    rela.builder.add_section(".rela.sockops", SHT_RELA, 0, Bytes(sizeof(Elf64_Rela)));
    write(dir, "seed-builder-rela", rela.builder.build());
    return 0;
}
