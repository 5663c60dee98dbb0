// Unit tests of elf/reader: what it returns for well-formed objects and how it refuses malformed ones.
#include <doctest/doctest.h>

#include <elf.h>

#include "elf/object.hpp"
#include "elf/reader.hpp"
#include "loader/base/error.hpp"
#include "tests/elf_builder.hpp"

using namespace sockredir;
using namespace sockredir::base;
using namespace sockredir::test;

namespace {

elf::ElfFile read_bytes(const Bytes& bytes)
{
    return elf::read(bytes);
}

// A small object with one of everything the reader knows: PROGBITS, NOBITS, a symbol table, a REL section.
struct Small {
    ElfBuilder b;
    uint32_t prog = 0, data = 0, bss = 0;
    uint32_t func = 0, object = 0, local = 0, undef = 0;

    Small()
    {
        const auto insns = insn::program(insn::ld_imm64(1, 0), insn::mov_imm(0, 0), insn::exit_insn());
        prog = b.add_program("prog", "f", insns);
        func = 1;
        data = b.add_section(".data", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, to_bytes("abcdefgh"), 4);
        bss = b.add_section(".bss", SHT_NOBITS, SHF_ALLOC | SHF_WRITE, {}, 8);
        object = b.add_symbol({"obj", static_cast<uint16_t>(data), 4, 4, STT_OBJECT, STB_GLOBAL});
        local = b.add_symbol({"loc", static_cast<uint16_t>(prog), 16, 0, STT_NOTYPE, STB_LOCAL});
        undef = b.add_symbol({"ext", SHN_UNDEF, 0, 0, STT_NOTYPE, STB_GLOBAL});
        b.add_rel(prog, {0, R_BPF_64_64, object});
        b.add_rel(prog, {8, 10, undef});
    }
};

} // namespace

TEST_CASE("the reader returns every section of a built object with its name, type, flags and bytes")
{
    Small s;
    const Bytes bytes = s.b.build();
    const auto f = read_bytes(bytes);
    CHECK(f.machine == EM_BPF);
    REQUIRE(f.sections.size() == s.b.shstrtab_index() + 1);
    CHECK(f.sections[0].type == SHT_NULL);
    for (uint32_t i = 0; i < f.sections.size(); ++i)
        CHECK(f.sections[i].index == i);

    const auto& prog = f.sections[s.prog];
    CHECK(prog.name == "prog");
    CHECK(prog.type == SHT_PROGBITS);
    CHECK(prog.flags == (SHF_ALLOC | SHF_EXECINSTR));
    CHECK(prog.size == 4 * sizeof(bpf_insn));
    CHECK(prog.data.size() == prog.size);
    CHECK(prog.data.data() == bytes.data() + prog.offset);

    const auto& data = f.sections[s.data];
    CHECK(data.name == ".data");
    CHECK(data.flags == (SHF_ALLOC | SHF_WRITE));
    CHECK(data.addralign == 4);
    REQUIRE(data.data.size() == 8);
    CHECK(static_cast<char>(data.data[0]) == 'a');
    CHECK(static_cast<char>(data.data[7]) == 'h');

    CHECK(f.sections[s.bss].type == SHT_NOBITS);
    CHECK(f.sections[s.b.symtab_index()].name == ".symtab");
    CHECK(f.sections[s.b.symtab_index()].link == s.b.strtab_index());
    CHECK(f.sections[s.b.strtab_index()].name == ".strtab");
    CHECK(f.sections[s.b.shstrtab_index()].name == ".shstrtab");
    CHECK(f.sections[s.b.rel_index(s.prog)].name == ".relprog");
}

TEST_CASE("the reader returns every symbol with its name, value, size, section, type and binding")
{
    Small s;
    const Bytes bytes = s.b.build();
    const auto f = read_bytes(bytes);
    REQUIRE(f.symbols.size() == 5);
    CHECK(f.symbols[0].name.empty());
    CHECK(f.symbols[0].shndx == SHN_UNDEF);

    const auto& func = f.symbols[s.func];
    CHECK(func.index == s.func);
    CHECK(func.name == "f");
    CHECK(func.shndx == s.prog);
    CHECK(func.size == 4 * sizeof(bpf_insn));
    CHECK(func.type == STT_FUNC);
    CHECK(func.bind == STB_GLOBAL);

    const auto& obj = f.symbols[s.object];
    CHECK(obj.name == "obj");
    CHECK(obj.value == 4);
    CHECK(obj.size == 4);
    CHECK(obj.shndx == s.data);
    CHECK(obj.type == STT_OBJECT);

    const auto& loc = f.symbols[s.local];
    CHECK(loc.name == "loc");
    CHECK(loc.value == 16);
    CHECK(loc.bind == STB_LOCAL);
    CHECK(loc.type == STT_NOTYPE);

    CHECK(f.symbols[s.undef].name == "ext");
    CHECK(f.symbols[s.undef].shndx == SHN_UNDEF);
}

TEST_CASE("the reader returns every relocation with its offset, type, symbol and target section")
{
    Small s;
    const Bytes bytes = s.b.build();
    const auto f = read_bytes(bytes);
    REQUIRE(f.relocations.size() == 1);
    const auto& rs = f.relocations[0];
    CHECK(rs.section == s.b.rel_index(s.prog));
    CHECK(rs.target == s.prog);
    REQUIRE(rs.entries.size() == 2);
    CHECK(rs.entries[0].offset == 0);
    CHECK(rs.entries[0].type == R_BPF_64_64);
    CHECK(rs.entries[0].symbol == s.object);
    CHECK(rs.entries[1].offset == 8);
    CHECK(rs.entries[1].type == 10);
    CHECK(rs.entries[1].symbol == s.undef);
}

TEST_CASE("find_section finds a section by name and returns null for a name that is not there")
{
    Small s;
    const Bytes bytes = s.b.build();
    const auto f = read_bytes(bytes);
    REQUIRE(f.find_section(".data") != nullptr);
    CHECK(f.find_section(".data")->index == s.data);
    CHECK(f.find_section("nope") == nullptr);
}

TEST_CASE("a NOBITS section may claim more bytes than the file has")
{
    Small s;
    Bytes bytes = s.b.build();
    patch_shdr(bytes, s.bss, [&](Elf64_Shdr& h) {
        h.sh_offset = bytes.size() + 4096;
        h.sh_size = 1U << 30;
    });
    const auto f = read_bytes(bytes);
    CHECK(f.sections[s.bss].size == 1U << 30);
    CHECK(f.sections[s.bss].data.empty());
}

TEST_CASE("the reader accepts the clang-built object and sees its program, map, BTF and license sections")
{
    const Bytes bytes = real_object();
    const auto f = read_bytes(bytes);
    CHECK(f.machine == EM_BPF);
    for (const char* name :
         {"sockops", "sk_msg", ".maps", ".BTF", ".BTF.ext", "license", ".symtab", ".relsockops", ".relsk_msg"})
        CHECK_MESSAGE(f.find_section(name) != nullptr, name);
    const auto* sockops = f.find_section("sockops");
    REQUIRE(sockops != nullptr);
    CHECK((sockops->flags & SHF_EXECINSTR) != 0);
    bool found_rel = false;
    for (const auto& rs : f.relocations)
        if (rs.target == sockops->index) {
            found_rel = true;
            CHECK_FALSE(rs.entries.empty());
        }
    CHECK(found_rel);
}

TEST_CASE("every truncation of the real object is refused with an error, never a crash")
{
    const Bytes whole = real_object();
    // The section header table sits at the end of clang's output, so no proper prefix is a complete object.
    const auto ehdr = get_ehdr(whole);
    REQUIRE(ehdr.e_shoff + uint64_t{ehdr.e_shnum} * sizeof(Elf64_Shdr) == whole.size());
    size_t refused = 0;
    for (size_t n = 0; n < whole.size(); ++n) {
        const Bytes cut = truncated(whole, n);
        try {
            (void)elf::parse_object(cut);
            FAIL("a truncation to " << n << " bytes was accepted");
        } catch (const Error&) {
            ++refused;
        } catch (const std::exception& e) {
            FAIL("a truncation to " << n << " bytes threw a non-sockredir exception: " << e.what());
        }
    }
    CHECK(refused == whole.size());
    CHECK_NOTHROW((void)elf::parse_object(whole));
}

TEST_CASE("truncating the real object at chosen points names the part that is cut off")
{
    const Bytes whole = real_object();
    const auto ehdr = get_ehdr(whole);
    CHECK_THROWS_WITH_AS(read_bytes(truncated(whole, 0)), doctest::Contains("ELF header: file is truncated"), Error);
    CHECK_THROWS_WITH_AS(read_bytes(truncated(whole, EI_NIDENT - 1)),
                         doctest::Contains("ELF header: file is truncated"), Error);
    CHECK_THROWS_WITH_AS(read_bytes(truncated(whole, sizeof(Elf64_Ehdr) - 1)),
                         doctest::Contains("ELF header: 64 bytes at offset 0x0 lie past the end of the file "
                                           "(63 bytes)"),
                         Error);
    // Everything but the section header table.
    CHECK_THROWS_WITH_AS(read_bytes(truncated(whole, ehdr.e_shoff)),
                         doctest::Contains("section header #0: 64 bytes at offset"), Error);
    // The last section header loses its last byte.
    const std::string last = "section header #" + std::to_string(ehdr.e_shnum - 1) + ": 64 bytes";
    CHECK_THROWS_WITH_AS(read_bytes(truncated(whole, whole.size() - 1)), doctest::Contains(last.c_str()), Error);
}

TEST_CASE("a file with bad ELF magic is refused")
{
    Bytes bytes = real_object();
    store(bytes, 1, 'X');
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("ELF header: not an ELF file (bad magic)"), Error);
}

TEST_CASE("a 32-bit ELF class is refused")
{
    Bytes bytes = real_object();
    store(bytes, EI_CLASS, static_cast<unsigned char>(ELFCLASS32));
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("ELF header: not ELF64 (class 1)"), Error);
}

TEST_CASE("a big-endian ELF file is refused")
{
    Bytes bytes = real_object();
    store(bytes, EI_DATA, static_cast<unsigned char>(ELFDATA2MSB));
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("ELF header: not little-endian (data encoding 2)"),
                         Error);
}

TEST_CASE("an ELF file that is not a relocatable object is refused")
{
    Bytes bytes = real_object();
    patch_ehdr(bytes, [](Elf64_Ehdr& h) { h.e_type = ET_EXEC; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("ELF header: not a relocatable object (e_type 2)"),
                         Error);
}

TEST_CASE("a section header entry size other than Elf64_Shdr is refused")
{
    Bytes bytes = real_object();
    patch_ehdr(bytes, [](Elf64_Ehdr& h) { h.e_shentsize = 40; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("ELF header: section header size 40 is not 64"), Error);
}

TEST_CASE("an object without section headers is refused")
{
    Bytes bytes = real_object();
    patch_ehdr(bytes, [](Elf64_Ehdr& h) { h.e_shnum = 0; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("ELF header: no section headers"), Error);
}

TEST_CASE("a section name table index past the section count is refused")
{
    Bytes bytes = real_object();
    const auto shnum = get_ehdr(bytes).e_shnum;
    patch_ehdr(bytes, [](Elf64_Ehdr& h) { h.e_shstrndx = h.e_shnum; });
    const std::string expected = "ELF header: section name table index " + std::to_string(shnum) +
                                 " is out of range (" + std::to_string(shnum) + " sections)";
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(expected.c_str()), Error);
    patch_ehdr(bytes, [](Elf64_Ehdr& h) { h.e_shstrndx = SHN_UNDEF; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("section name table index 0 is out of range"), Error);
}

TEST_CASE("a section name table that is not a string table is refused")
{
    Bytes bytes = real_object();
    const auto sockops = section_index(bytes, "sockops");
    patch_ehdr(bytes, [&](Elf64_Ehdr& h) { h.e_shstrndx = static_cast<uint16_t>(sockops); });
    const std::string expected =
        "section header #" + std::to_string(sockops) + ": section name table is not SHT_STRTAB";
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(expected.c_str()), Error);
}

TEST_CASE("a section header table past the end of the file is refused")
{
    Bytes bytes = real_object();
    patch_ehdr(bytes, [](Elf64_Ehdr& h) { h.e_shoff = ~uint64_t{0} - 8; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes),
                         doctest::Contains("section header #0: 64 bytes at offset 0xfffffffffffffff7"), Error);
}

TEST_CASE("a section whose contents lie past the end of the file is refused")
{
    const Bytes whole = real_object();
    const auto sockops = section_index(whole, "sockops");
    const std::string label = "section header #" + std::to_string(sockops) + ": contents (";

    Bytes bytes = whole;
    patch_shdr(bytes, sockops, [&](Elf64_Shdr& h) { h.sh_size = whole.size(); });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(label.c_str()), Error);
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("lie past the end of the file"), Error);

    bytes = whole;
    patch_shdr(bytes, sockops, [&](Elf64_Shdr& h) { h.sh_offset = whole.size() + 1; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(label.c_str()), Error);

    // offset + size wraps around 2^64: must not pass as "small".
    bytes = whole;
    patch_shdr(bytes, sockops, [&](Elf64_Shdr& h) {
        h.sh_offset = 16;
        h.sh_size = ~uint64_t{0} - 8;
    });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(label.c_str()), Error);

    // Exactly to the end of the file is fine.
    bytes = whole;
    patch_shdr(bytes, sockops, [&](Elf64_Shdr& h) { h.sh_size = whole.size() - h.sh_offset; });
    CHECK_NOTHROW(read_bytes(bytes));
}

TEST_CASE("a section link past the section count is refused")
{
    Bytes bytes = real_object();
    const auto rel = section_index(bytes, ".relsockops");
    patch_shdr(bytes, rel, [](Elf64_Shdr& h) { h.sh_link = 1000; });
    const std::string expected = "section header #" + std::to_string(rel) + ": sh_link 1000 is out of range";
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(expected.c_str()), Error);
}

TEST_CASE("a section name offset outside the section name table is refused")
{
    Bytes bytes = real_object();
    const auto sockops = section_index(bytes, "sockops");
    const auto names = get_ehdr(bytes).e_shstrndx;
    const auto names_size = get_shdr(bytes, names).sh_size;
    patch_shdr(bytes, sockops, [&](Elf64_Shdr& h) { h.sh_name = static_cast<uint32_t>(names_size); });
    std::string expected = "section header #" + std::to_string(sockops) + ": name offset ";
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(expected.c_str()), Error);
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("is outside string table"), Error);
    patch_shdr(bytes, sockops, [&](Elf64_Shdr& h) { h.sh_name = 0xffffffffU; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("name offset 0xffffffff is outside string table"), Error);
}

TEST_CASE("a section name that is not NUL-terminated in the section name table is refused")
{
    ElfBuilder b;
    b.add_program("prog", "f", {insn::mov_imm(0, 0), insn::exit_insn()});
    Bytes bytes = b.build();
    // ".shstrtab" is the last name in its own table; overwrite its terminating NUL.
    const auto names = get_shdr(bytes, b.shstrtab_index());
    store(bytes, names.sh_offset + names.sh_size - 1, 'x');
    const std::string expected = "section header #" + std::to_string(b.shstrtab_index()) + ": name at offset";
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(expected.c_str()), Error);
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("is not NUL-terminated"), Error);
}

TEST_CASE("a symbol name that is not NUL-terminated in the symbol string table is refused")
{
    ElfBuilder b;
    b.add_program("prog", "first", {insn::mov_imm(0, 0), insn::exit_insn()});
    b.add_symbol({"last_name", SHN_UNDEF, 0, 0, STT_NOTYPE, STB_GLOBAL});
    Bytes bytes = b.build();
    const auto strtab = get_shdr(bytes, b.strtab_index());
    store(bytes, strtab.sh_offset + strtab.sh_size - 1, 'x');
    CHECK_THROWS_WITH_AS(read_bytes(bytes),
                         doctest::Contains("section '.symtab': symbol #2: name at offset 0x7 in string table "
                                           "'.strtab' is not NUL-terminated"),
                         Error);
}

TEST_CASE("a symbol name offset outside the string table is refused")
{
    Bytes bytes = real_object();
    const auto symtab = section_index(bytes, ".symtab");
    const auto sh = get_shdr(bytes, symtab);
    auto sym = load<Elf64_Sym>(bytes, sh.sh_offset + 3 * sizeof(Elf64_Sym));
    sym.st_name = 0x7fffffff;
    store(bytes, sh.sh_offset + 3 * sizeof(Elf64_Sym), sym);
    CHECK_THROWS_WITH_AS(read_bytes(bytes),
                         doctest::Contains("section '.symtab': symbol #3: name offset 0x7fffffff is outside string"),
                         Error);
}

TEST_CASE("a symbol whose section index is past the section count is refused")
{
    Small s;
    s.b.add_symbol({"stray", 999, 0, 0, STT_OBJECT, STB_GLOBAL});
    CHECK_THROWS_WITH_AS(read_bytes(s.b.build()),
                         doctest::Contains("section '.symtab': symbol #5 ('stray'): section index 999 is out of range"),
                         Error);
}

TEST_CASE("a symbol in a reserved section such as SHN_ABS is accepted")
{
    Small s;
    const auto abs = s.b.add_symbol({"file.c", SHN_ABS, 0, 0, STT_FILE, STB_LOCAL});
    const auto f = read_bytes(s.b.build());
    CHECK(f.symbols[abs].shndx == SHN_ABS);
    CHECK(f.symbols[abs].type == STT_FILE);
}

TEST_CASE("a second symbol table is refused")
{
    Small s;
    Bytes bytes = s.b.build();
    // Turn .data into a second SHT_SYMTAB.
    patch_shdr(bytes, s.data, [](Elf64_Shdr& h) { h.sh_type = SHT_SYMTAB; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("second symbol table (only one is supported)"), Error);
}

TEST_CASE("a symbol table with the wrong entry size or a partial entry is refused")
{
    Small s;
    const Bytes whole = s.b.build();
    Bytes bytes = whole;
    patch_shdr(bytes, s.b.symtab_index(), [](Elf64_Shdr& h) { h.sh_entsize = 16; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("section '.symtab': entry size 16 is not 24"), Error);
    bytes = whole;
    patch_shdr(bytes, s.b.symtab_index(), [](Elf64_Shdr& h) { h.sh_size -= 1; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("section '.symtab': size 119 is not a multiple"), Error);
}

TEST_CASE("a symbol table linked to something other than a string table is refused")
{
    Small s;
    Bytes bytes = s.b.build();
    patch_shdr(bytes, s.b.symtab_index(), [&](Elf64_Shdr& h) { h.sh_link = s.data; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes),
                         doctest::Contains("section '.symtab': linked string table section '.data' is not SHT_STRTAB"),
                         Error);
}

TEST_CASE("a relocation whose symbol index is past the symbol table is refused")
{
    Bytes bytes = real_object();
    const auto rel = section_index(bytes, ".relsockops");
    patch_rel(bytes, rel, 0, [](Elf64_Rel& r) { r.r_info = ELF64_R_INFO(9999, ELF64_R_TYPE(r.r_info)); });
    CHECK_THROWS_WITH_AS(read_bytes(bytes),
                         doctest::Contains("section '.relsockops': relocation #0: symbol index 9999 is out of range"),
                         Error);
}

TEST_CASE("a relocation whose offset lies outside its target section is refused")
{
    const Bytes whole = real_object();
    const auto rel = section_index(whole, ".relsk_msg");
    const auto target_size = get_shdr(whole, section_index(whole, "sk_msg")).sh_size;
    for (uint64_t offset : {target_size, target_size - 3, target_size + 8, ~uint64_t{0} - 2}) {
        CAPTURE(offset);
        Bytes bytes = whole;
        patch_rel(bytes, rel, 1, [&](Elf64_Rel& r) { r.r_offset = offset; });
        CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("section '.relsk_msg': relocation #1: offset 0x"),
                             Error);
        CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("is outside section 'sk_msg'"), Error);
    }
    // The last four bytes are still inside for the reader; the object model then checks instruction bounds.
    Bytes bytes = whole;
    patch_rel(bytes, rel, 1, [&](Elf64_Rel& r) { r.r_offset = target_size - 4; });
    CHECK_NOTHROW(read_bytes(bytes));
}

TEST_CASE("a relocation section with the wrong entry size or a partial entry is refused")
{
    const Bytes whole = real_object();
    const auto rel = section_index(whole, ".relsockops");
    Bytes bytes = whole;
    patch_shdr(bytes, rel, [](Elf64_Shdr& h) { h.sh_entsize = 24; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("section '.relsockops': entry size 24 is not 16"), Error);
    bytes = whole;
    patch_shdr(bytes, rel, [](Elf64_Shdr& h) { h.sh_size -= 8; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("section '.relsockops': size"), Error);
    CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains("is not a multiple of the entry size"), Error);
}

TEST_CASE("a relocation section not linked to the symbol table is refused")
{
    Bytes bytes = real_object();
    const auto rel = section_index(bytes, ".relsockops");
    patch_shdr(bytes, rel, [](Elf64_Shdr& h) { h.sh_link = 1; });
    CHECK_THROWS_WITH_AS(read_bytes(bytes),
                         doctest::Contains("section '.relsockops': linked section 1 is not the symbol table"), Error);
}

TEST_CASE("a relocation section whose target index is out of range is refused")
{
    const Bytes whole = real_object();
    const auto rel = section_index(whole, ".relsockops");
    for (uint32_t target : {0U, uint32_t{get_ehdr(whole).e_shnum}, 0xffffffffU}) {
        CAPTURE(target);
        Bytes bytes = whole;
        patch_shdr(bytes, rel, [&](Elf64_Shdr& h) { h.sh_info = target; });
        const std::string expected =
            "section '.relsockops': target section index " + std::to_string(target) + " is out of range";
        CHECK_THROWS_WITH_AS(read_bytes(bytes), doctest::Contains(expected.c_str()), Error);
    }
}

TEST_CASE("corrupting any single byte of the headers, symbols or relocations never crashes the parser")
{
    const Bytes whole = real_object();
    const auto ehdr = get_ehdr(whole);
    std::vector<std::pair<uint64_t, uint64_t>> ranges = {
        {0, sizeof(Elf64_Ehdr)},
        {ehdr.e_shoff, uint64_t{ehdr.e_shnum} * sizeof(Elf64_Shdr)},
    };
    for (const char* name : {".symtab", ".relsockops", ".relsk_msg", ".maps", "license", ".BTF", ".BTF.ext"}) {
        const auto sh = get_shdr(whole, section_index(whole, name));
        ranges.emplace_back(sh.sh_offset, sh.sh_size);
    }
    size_t accepted = 0, refused = 0;
    for (const auto& [begin, length] : ranges)
        for (uint64_t at = begin; at < begin + length; ++at)
            for (uint8_t value : {uint8_t{0x00}, uint8_t{0xff}, uint8_t{0x80}}) {
                Bytes bytes = whole;
                if (bytes[at] == std::byte{value})
                    continue;
                bytes[at] = std::byte{value};
                try {
                    (void)elf::parse_object(bytes);
                    ++accepted;
                } catch (const Error&) {
                    ++refused;
                } catch (const std::exception& e) {
                    FAIL("byte " << at << " = " << int{value} << " threw a non-sockredir exception: " << e.what());
                }
            }
    // Both outcomes must occur: some bytes (padding, values) do not matter, many do.
    CHECK(accepted > 0);
    CHECK(refused > 0);
}
