// sockredir-min entry point: arguments in, exit code out; all work is in cli.cpp.
#include <cstdio>
#include <string>
#include <vector>

#include "loader/app/cli.hpp"

int main(int argc, char** argv)
{
    std::vector<std::string> args(argv + 1, argv + argc);
    const auto parsed = sockredir::app::parse_command_line(args);
    if (!parsed.command) {
        std::fprintf(stderr, "sockredir-min: %s\n", parsed.error.c_str());
        return sockredir::app::kExitUsage;
    }
    return sockredir::app::run(*parsed.command);
}
