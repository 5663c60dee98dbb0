// LLVM libObject as an oracle: elf::read must see every section, symbol and relocation of the object as LLVM does.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <llvm/Object/ELF.h>
#include <llvm/Object/ELFObjectFile.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBuffer.h>

#include "elf/object.hpp"
#include "elf/reader.hpp"

namespace {

using llvm::object::ELF64LEObjectFile;
// <elf.h> and LLVM's ELF.h define the same names; LLVM's are used here.
using namespace llvm::ELF;

template <typename T> T unwrap(llvm::Expected<T> value, const char* what)
{
    if (!value) {
        const std::string message = llvm::toString(value.takeError());
        FAIL(what << ": " << message);
    }
    return std::move(*value);
}

// The object under test and both views of it. The buffer outlives the views.
struct Views {
    std::unique_ptr<llvm::MemoryBuffer> buffer;
    std::unique_ptr<llvm::object::ObjectFile> llvm_object;
    const ELF64LEObjectFile* llvm_elf = nullptr;
    sockredir::elf::ElfFile ours;

    Views()
    {
        const char* path = std::getenv("SOCKREDIR_BPF_OBJECT");
        REQUIRE_MESSAGE(path != nullptr, "SOCKREDIR_BPF_OBJECT must name the built BPF object (meson test sets it)");
        auto file = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
        REQUIRE_MESSAGE(static_cast<bool>(file), "cannot read " << path);
        buffer = std::move(*file);
        llvm_object = unwrap(llvm::object::ObjectFile::createObjectFile(buffer->getMemBufferRef()), "LLVM open");
        llvm_elf = llvm::dyn_cast<ELF64LEObjectFile>(llvm_object.get());
        REQUIRE_MESSAGE(llvm_elf != nullptr, "LLVM does not see an ELF64 little-endian object");
        const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(buffer->getBufferStart()),
                                               buffer->getBufferSize());
        ours = sockredir::elf::read(bytes);
    }
};

std::string str(llvm::StringRef s)
{
    return s.str();
}

} // namespace

TEST_CASE("LLVM and elf::read agree on the machine and the number of sections, symbols and relocation sections")
{
    Views v;
    const auto& header = v.llvm_elf->getELFFile().getHeader();
    CHECK(v.ours.machine == header.e_machine);
    CHECK(v.ours.machine == EM_BPF);
    CHECK(v.llvm_elf->getArch() == llvm::Triple::bpfel);

    const auto sections = unwrap(v.llvm_elf->getELFFile().sections(), "LLVM sections");
    CHECK(v.ours.sections.size() == sections.size());

    // LLVM's symbol iterator skips the null symbol; ours keeps it as symbols[0].
    size_t llvm_symbols = 0;
    for (const auto& sym : v.llvm_object->symbols()) {
        (void)sym;
        ++llvm_symbols;
    }
    REQUIRE_FALSE(v.ours.symbols.empty());
    CHECK(v.ours.symbols.size() == llvm_symbols + 1);

    size_t rel_sections = 0;
    for (const auto& s : sections)
        rel_sections += s.sh_type == SHT_REL || s.sh_type == SHT_RELA;
    CHECK(v.ours.relocations.size() == rel_sections);
    CHECK(rel_sections > 0);
}

TEST_CASE("LLVM and elf::read agree on every section's index, name, type, flags, offset, size, link, info and entsize")
{
    Views v;
    size_t compared = 0;
    for (const llvm::object::SectionRef& s : v.llvm_object->sections()) {
        const uint64_t index = s.getIndex();
        REQUIRE(index < v.ours.sections.size());
        const auto& mine = v.ours.sections[index];
        const std::string name = str(unwrap(s.getName(), "LLVM section name"));
        CAPTURE(index);
        CAPTURE(name);
        const llvm::object::ELFSectionRef es(s);
        const auto* shdr = v.llvm_elf->getSection(s.getRawDataRefImpl());
        REQUIRE(shdr != nullptr);

        CHECK(mine.index == index);
        CHECK(mine.name == name);
        CHECK(mine.type == es.getType());
        CHECK(mine.flags == es.getFlags());
        CHECK(mine.offset == es.getOffset());
        CHECK(mine.size == s.getSize());
        CHECK(mine.link == shdr->sh_link);
        CHECK(mine.info == shdr->sh_info);
        CHECK(mine.entsize == shdr->sh_entsize);
        CHECK(mine.addralign == shdr->sh_addralign);
        CHECK(mine.addralign == s.getAlignment());

        // The bytes too, where the section has any in the file.
        if (mine.type != SHT_NOBITS && mine.type != SHT_NULL) {
            const llvm::StringRef contents = unwrap(s.getContents(), "LLVM section contents");
            REQUIRE(mine.data.size() == contents.size());
            CHECK(std::memcmp(mine.data.data(), contents.data(), contents.size()) == 0);
        }
        ++compared;
    }
    CHECK(compared == v.ours.sections.size());
}

TEST_CASE("LLVM and elf::read agree on every symbol's name, value, size, section index, type and binding")
{
    Views v;
    size_t compared = 0;
    for (const llvm::object::SymbolRef& sym : v.llvm_object->symbols()) {
        const uint32_t index = sym.getRawDataRefImpl().d.b;
        REQUIRE(index < v.ours.symbols.size());
        const auto& mine = v.ours.symbols[index];
        const llvm::object::ELFSymbolRef es(sym);
        const auto* raw = unwrap(v.llvm_elf->getSymbol(sym.getRawDataRefImpl()), "LLVM symbol");
        const std::string name = str(unwrap(sym.getName(), "LLVM symbol name"));
        CAPTURE(index);
        CAPTURE(name);

        CHECK(mine.index == index);
        // LLVM names a nameless section symbol after its section; ours keeps the empty name the file states.
        if (es.getELFType() == STT_SECTION && raw->st_name == 0) {
            CHECK(mine.name.empty());
            REQUIRE(mine.shndx < v.ours.sections.size());
            CHECK(v.ours.sections[mine.shndx].name == name);
        } else {
            CHECK(mine.name == name);
        }
        CHECK(mine.value == unwrap(sym.getValue(), "LLVM symbol value"));
        CHECK(mine.size == es.getSize());
        CHECK(mine.type == es.getELFType());
        CHECK(mine.bind == es.getBinding());
        CHECK(mine.shndx == raw->st_shndx);

        const auto section = unwrap(sym.getSection(), "LLVM symbol section");
        if (mine.shndx == SHN_UNDEF || mine.shndx >= SHN_LORESERVE)
            CHECK(section == v.llvm_object->section_end());
        else if (section != v.llvm_object->section_end())
            CHECK(mine.shndx == section->getIndex());
        else
            FAIL("LLVM finds no section for symbol in section " << mine.shndx);
        ++compared;
    }
    CHECK(compared + 1 == v.ours.symbols.size());
}

TEST_CASE("LLVM and elf::read agree on every relocation of every REL section: target, offset, type and symbol")
{
    Views v;
    size_t sections = 0, entries = 0;
    for (const llvm::object::SectionRef& s : v.llvm_object->sections()) {
        const llvm::object::ELFSectionRef es(s);
        if (es.getType() != SHT_REL)
            continue;
        const std::string name = str(unwrap(s.getName(), "LLVM section name"));
        CAPTURE(name);
        const sockredir::elf::RelocationSection* mine = nullptr;
        for (const auto& rs : v.ours.relocations)
            if (rs.section == s.getIndex())
                mine = &rs;
        REQUIRE_MESSAGE(mine != nullptr, "elf::read lost relocation section " << name);

        const auto target = unwrap(s.getRelocatedSection(), "LLVM relocated section");
        REQUIRE(target != v.llvm_object->section_end());
        CHECK(mine->target == target->getIndex());

        size_t i = 0;
        for (const llvm::object::RelocationRef& r : s.relocations()) {
            CAPTURE(i);
            REQUIRE(i < mine->entries.size());
            const auto& e = mine->entries[i];
            CHECK(e.offset == r.getOffset());
            CHECK(e.type == r.getType());
            const auto sym = r.getSymbol();
            const uint32_t symbol = sym == v.llvm_object->symbol_end() ? 0 : sym->getRawDataRefImpl().d.b;
            CHECK(e.symbol == symbol);
            CHECK(e.addend == 0);
            ++i;
            ++entries;
        }
        CHECK(i == mine->entries.size());
        ++sections;
    }
    CHECK(sections == v.ours.relocations.size());
    CHECK(entries > 0);
}

TEST_CASE("our relocation type names are LLVM's for every BPF relocation type LLVM knows")
{
    Views v;
    size_t named = 0;
    for (uint32_t type = 0; type < 64; ++type) {
        const std::string llvm_name = str(llvm::object::getELFRelocationTypeName(EM_BPF, type));
        const std::string ours = sockredir::elf::relocation_name(type);
        CAPTURE(type);
        if (llvm_name == "Unknown") {
            CHECK(ours == "unknown");
            continue;
        }
        // Ours may add a reason in parentheses after the name.
        CHECK(ours.rfind(llvm_name, 0) == 0);
        CHECK((ours.size() == llvm_name.size() || ours[llvm_name.size()] == ' '));
        ++named;
    }
    CHECK(named >= 5);

    // And every relocation in the real object is of a type LLVM names the way we do.
    for (const llvm::object::SectionRef& s : v.llvm_object->sections())
        for (const llvm::object::RelocationRef& r : s.relocations()) {
            llvm::SmallString<32> llvm_name;
            r.getTypeName(llvm_name);
            CHECK(std::string(sockredir::elf::relocation_name(static_cast<uint32_t>(r.getType())))
                      .rfind(llvm_name.str().str(), 0) == 0);
        }
}
