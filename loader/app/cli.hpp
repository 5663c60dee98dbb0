// The command line: parsing into a Command (no side effects) and running it with the documented exit codes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loader/app/ports.hpp"
#include "loader/base/error.hpp"

namespace sockredir::app {

enum class Verb { Attach, Detach, Status, Check, Run, Ports, Help, Version };

struct Command {
    Verb verb = Verb::Help;
    std::string cgroup;
    std::string pin_dir;
    std::string object_file;
    uint32_t max_sockets = 0;
    PortRanges ports; // empty: every port (attach, run: --ports; ports: its argument)
    bool json = false;
};

// Exit codes of the contract.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct ParseResult {
    std::optional<Command> command;
    std::string error; // set when command is empty: one line, for stderr
};

ParseResult parse_command_line(const std::vector<std::string>& args);

// Runs the command; prints results on stdout and the one-line reason of a
// failure on stderr. Returns the exit code.
int run(const Command& command);

extern const char* const kUsage;
extern const char* const kVersion;

} // namespace sockredir::app
