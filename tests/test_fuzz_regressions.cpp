// Regression tests of what fuzzing and hostile-object review found in elf/ and the open phase, and replays of the corpora.
#include <doctest/doctest.h>

#include <elf.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <string>
#include <vector>

#include "elf/btf.hpp"
#include "elf/reader.hpp"
#include "loader/app/contract.hpp"
#include "loader/base/error.hpp"
#include "loader/base/file.hpp"
#include "tests/btf_builder.hpp"
#include "tests/elf_builder.hpp"
#include "tests/fuzz/btf_harness.hpp"

using namespace sockredir;
using namespace sockredir::base;
using namespace sockredir::app;
using namespace sockredir::test;

namespace {

// Each regular file of `subs` (below $SOCKREDIR_FUZZ_DIR) through `check`; at least one file must be there.
void replay(std::initializer_list<const char*> subs, const std::function<void(const Bytes&)>& check)
{
    const char* dir = std::getenv("SOCKREDIR_FUZZ_DIR");
    REQUIRE_MESSAGE((dir != nullptr && *dir != '\0'), "SOCKREDIR_FUZZ_DIR must name tests/fuzz (meson test sets it)");
    size_t count = 0;
    for (const char* sub : subs) {
        const auto path = std::filesystem::path(dir) / sub;
        REQUIRE_MESSAGE(std::filesystem::is_directory(path), path << " is not a directory");
        for (const auto& entry : std::filesystem::directory_iterator(path)) {
            if (!entry.is_regular_file())
                continue;
            CAPTURE(entry.path().string());
            check(base::read_file_bytes(entry.path().string()));
            ++count;
        }
    }
    CHECK(count > 0);
}

// What the fuzz target checks: an input either plans or is refused with sockredir::base::Error; nothing else escapes.
bool plans_or_refuses(const Bytes& bytes)
{
    try {
        (void)sockredir_spec(bytes, {});
        return true;
    } catch (const Error&) {
        return true;
    } catch (...) {
        return false;
    }
}

double seconds_since(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace

// --- overlapping sections -------------------------------------------------------------------------------------
// Found by review of the fuzz target's resource use: 2000 SHT_REL headers over one zeroed 1 MB region (a 1.1 MB
// file) made elf::read build 125 million relocations, ~3 GB and minutes of CPU. Now the reader refuses symbol and
// relocation tables that overlap (tests/fuzz/regressions/overlapping-rel-sections is a 3-header version), and
// parse_object program sections that overlap (65535 of them over one region would be copied 65535 times).

TEST_CASE("two program sections whose contents overlap are refused, naming both")
{
    auto bytes = ObjectRecipe{}.build();
    const auto sockops = section_index(bytes, "sockops");
    const auto sk_msg = section_index(bytes, "sk_msg");
    const auto target = get_shdr(bytes, sockops);
    patch_shdr(bytes, sk_msg, [&](Elf64_Shdr& s) { s.sh_offset = target.sh_offset + 8; });
    CHECK_THROWS_WITH_AS(sockredir_spec(bytes, {}), doctest::Contains("section 'sk_msg': contents"), Error);
    CHECK_THROWS_WITH_AS(sockredir_spec(bytes, {}), doctest::Contains("overlap program section 'sockops'"), Error);
}

TEST_CASE("a relocation table overlapping the symbol table is refused")
{
    auto bytes = ObjectRecipe{}.build();
    const auto symtab = get_shdr(bytes, section_index(bytes, ".symtab"));
    patch_shdr(bytes, section_index(bytes, ".relsockops"), [&](Elf64_Shdr& s) {
        s.sh_offset = symtab.sh_offset;
        s.sh_size = 0;
    });
    CHECK_NOTHROW(elf::read(bytes)); // an empty table holds no bytes to share
    patch_shdr(bytes, section_index(bytes, ".relsockops"), [&](Elf64_Shdr& s) { s.sh_size = sizeof(Elf64_Rel); });
    // Sorted by offset, then index: the later-indexed .symtab is the one named first.
    CHECK_THROWS_WITH_AS(elf::read(bytes), doctest::Contains("section '.symtab': contents"), Error);
    CHECK_THROWS_WITH_AS(elf::read(bytes), doctest::Contains("overlap section '.relsockops'"), Error);
}

TEST_CASE("many relocation sections over one region are refused at once")
{
    ElfBuilder b;
    const auto prog = b.add_program("sockops", "f", {insn::mov_imm(0, 1), insn::exit_insn()});
    constexpr int kCopies = 200;
    std::vector<uint32_t> rels;
    for (int i = 0; i < kCopies; ++i)
        rels.push_back(b.add_section(".rel" + std::to_string(i), SHT_REL, 0, Bytes(64 * sizeof(Elf64_Rel)), 8));
    const auto symtab = b.symtab_index();
    auto bytes = b.build();
    const auto first = get_shdr(bytes, rels.front());
    for (const auto r : rels)
        patch_shdr(bytes, r, [&](Elf64_Shdr& s) {
            s.sh_offset = first.sh_offset;
            s.sh_link = symtab;
            s.sh_info = prog;
            s.sh_entsize = sizeof(Elf64_Rel);
        });
    CHECK_THROWS_WITH_AS(elf::read(bytes), doctest::Contains("overlap"), Error);
    // Each section alone (the others moved out of the way as empty) is still read.
    for (size_t i = 1; i < rels.size(); ++i)
        patch_shdr(bytes, rels[i], [](Elf64_Shdr& s) { s.sh_size = 0; });
    const auto file = elf::read(bytes);
    REQUIRE(file.relocations.size() == kCopies);
    CHECK(file.relocations.front().entries.size() == 64);
}

TEST_CASE("empty sections may share an offset with their neighbours, as clang emits an empty .text")
{
    auto parts = ObjectRecipe{}.parts();
    parts.builder.add_section(".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, {}, 4);
    parts.builder.add_section(".bss", SHT_NOBITS, SHF_ALLOC | SHF_WRITE, {}, 8);
    auto bytes = parts.builder.build();
    // A NOBITS section has no contents in the file, whatever offset and size it states.
    const auto bss = section_index(bytes, ".bss");
    patch_shdr(bytes, bss, [&](Elf64_Shdr& s) {
        s.sh_offset = get_shdr(bytes, section_index(bytes, "sockops")).sh_offset;
        s.sh_size = 4096;
    });
    const auto plan = sockredir_spec(bytes, {});
    CHECK(plan.programs.size() == 2);
}

// --- quadratic passes over hostile counts ---------------------------------------------------------------------
// Found by the same review: read_maps compared every map's offset with every earlier one and each relocation
// searched all maps linearly; a 4.4 MB object with 100000 map definitions took 133 s under ASan (0.7 s now).
// program_name and the relocation lookup scanned every symbol / relocation section per program section.

TEST_CASE("an object with 200000 map definitions is refused in linear time")
{
    ElfBuilder b;
    b.add_program("sockops", "f", {insn::mov_imm(0, 1), insn::exit_insn()});
    constexpr uint64_t kMaps = 200000;
    const auto maps =
        b.add_section("maps", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, Bytes(kMaps * sizeof(elf::LegacyMapDef)), 4);
    for (uint64_t i = 0; i < kMaps; ++i)
        b.add_symbol({"m", static_cast<uint16_t>(maps), i * sizeof(elf::LegacyMapDef), sizeof(elf::LegacyMapDef),
                      STT_OBJECT, STB_GLOBAL});
    b.add_section("license", SHT_PROGBITS, SHF_ALLOC, to_bytes(std::string("GPL") + '\0'), 1);
    const auto bytes = b.build();
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH_AS(sockredir_spec(bytes, {}), doctest::Contains("map 'm'"), Error);
    // Quadratic, this is 2e10 comparisons: minutes, not seconds, even without sanitizers.
    CHECK(seconds_since(start) < 30.0);
}

TEST_CASE("an object with 20000 program sections and 100000 symbols is refused in linear time")
{
    ElfBuilder b;
    constexpr int kPrograms = 20000;
    for (int i = 0; i < kPrograms; ++i)
        b.add_program("p", "f", {insn::mov_imm(0, 1), insn::exit_insn()});
    for (int i = 0; i < 100000; ++i)
        b.add_symbol({"d", SHN_ABS, 0, 0, STT_NOTYPE, STB_LOCAL});
    b.add_section("license", SHT_PROGBITS, SHF_ALLOC, to_bytes(std::string("GPL") + '\0'), 1);
    const auto bytes = b.build();
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(sockredir_spec(bytes, {}), Error);
    CHECK(seconds_since(start) < 30.0);
}

// --- BTF (fuzz_btf) -------------------------------------------------------------------------------------------
// Inputs under tests/fuzz/btf/regressions are replayed, with the corpus, by the last test case of this file.

// Found by fuzz_btf: parse_btf_ext memcpy'd a CO-RE record into struct bpf_core_relo, whose kind is an enum, and read
// the kind through it; 2304 is outside the enum's values, which is undefined behaviour (UBSan: "load of value 2304,
// which is not a valid value for type 'enum bpf_core_relo_kind'"). The record is now read as four u32.
TEST_CASE("a CO-RE relocation kind far outside enum bpf_core_relo_kind is refused by its number")
{
    BtfBuilder b;
    const auto i = b.add_int("int", 4, BTF_INT_SIGNED, 32);
    const auto sec = b.add_string("socket");
    const auto access = b.add_string("0");
    BtfExtBuilder e;
    e.add_core_relo(sec, 0, i, access, 2304);
    const auto btf = elf::parse_btf(b.build());
    CHECK_THROWS_WITH_AS(elf::parse_btf_ext(e.build(), btf),
                         "section '.BTF.ext': core_relo: section 'socket': record #0: kind 2304 is not a "
                         "bpf_core_relo_kind (0 to 12)",
                         Error);
}

// --- the fuzz corpora -----------------------------------------------------------------------------------------

TEST_CASE("every input of the fuzz corpus and of the fuzz regressions plans or is refused with sockredir::base::Error")
{
    replay({"corpus", "regressions"}, [](const Bytes& bytes) { CHECK(plans_or_refuses(bytes)); });
}

TEST_CASE("every input of the BTF fuzz corpus and regressions keeps elf/btf's promises or is refused with one line")
{
    replay({"btf/corpus", "btf/regressions"}, [](const Bytes& bytes) { CHECK(check_btf_fuzz_input(bytes) == ""); });
}
