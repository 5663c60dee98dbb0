// sockredir-min entry point: arguments in, exit code out; all work is in cli.cpp.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "loader/app/cli.hpp"

// libstdc++'s default terminate handler prints the type of an exception no one caught, and so links the whole C++
// demangler (40 KB) into a static binary. run() catches every exception, so plain abort() serves: defining the
// handler variable here keeps libstdc++'s definition (eh_term_handler.o) and the demangler out of the link.
namespace __cxxabiv1 {
std::terminate_handler __terminate_handler = std::abort;
} // namespace __cxxabiv1

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
