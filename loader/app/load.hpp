// From a plan to live kernel objects: create maps, patch map fds into the instructions, load programs.
#pragma once

#include <string>
#include <vector>

#include "loader/app/plan.hpp"
#include "loader/base/fd.hpp"

namespace sockredir::app {

struct Map {
    std::string name;
    base::Fd fd;
};

struct Program {
    std::string name;
    std::string section;
    base::Fd fd;
};

// The live objects of one load, in plan order. Closing it (destruction) frees
// everything that is not pinned or attached.
struct Collection {
    base::Fd btf;
    std::vector<Map> maps;
    std::vector<Program> programs;
};

// Each phase is its own function so that a stack trace or a test can name it.
Collection create_maps(const LoadPlan& plan);
// The program's instructions with every map reference patched to the map's fd
// (ld_imm64 src_reg = BPF_PSEUDO_MAP_FD, imm = fd).
std::vector<bpf_insn> relocate(const elf::ProgramSpec& program, const std::vector<int>& map_fds);
void load_programs(const LoadPlan& plan, Collection& collection);

// create_maps + load_programs. On a verifier rejection the log is printed to
// stderr under the program's name before the Error is thrown.
Collection load(const LoadPlan& plan);

} // namespace sockredir::app
