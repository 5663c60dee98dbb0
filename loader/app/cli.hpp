// The command line as one table (bpftool's cmds[] + cmd_select): it generates the usage, the checks and the dispatch.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "loader/app/evict.hpp"
#include "loader/app/ports.hpp"

namespace sockredir::app {

// A parsed command line: the command's name and every value its options and argument set. No side effects.
struct Command {
    std::string_view verb; // the name of its row in commands() ("attach", "--help")
    std::string cgroup;
    std::string pin_dir;
    std::string object_file;
    uint32_t max_sockets = 0;
    uint64_t max_inflight = 0; // attach, run --max-inflight; 0: default_max_inflight()
    PortRanges ports;          // empty: every port (attach, run: --ports; ports: its argument)
    bool no_adaptive = false;  // attach, run --no-adaptive
    bool json = false;
    bool prometheus = false;     // status --prometheus
    uint16_t list_port = 0;      // list --port; 0: every connection
    std::string metrics;         // run --metrics HOST:PORT; empty: no endpoint
    unsigned sample_seconds = 0; // status --sample, 1 to kMaxSampleSeconds; 0: no sampling
    // detach, run --drain-timeout: how long the detach waits for unread redirected data to be read, 0 to
    // kMaxDrainTimeoutSeconds.
    unsigned drain_timeout_seconds = kDefaultDrainTimeout.count();
};

inline constexpr unsigned kMaxSampleSeconds = 3600;

// Stores the value of an option (empty for a flag) or of the argument in the command. Returns the usage error
// when the value is not good ("--pin-dir needs an absolute path"), empty when it is.
using SetValue = std::string (*)(Command& c, std::string_view value);

struct OptionSpec {
    std::string_view name;  // "--pin-dir"
    std::string_view value; // the value's placeholder ("DIR"); empty: a flag, which takes no value
    std::string_view help;  // one sentence for --help
    SetValue set;
};

// The one positional argument of a command (ports' LIST|all), or none.
struct PositionalSpec {
    std::string_view name = {};    // its placeholder ("LIST|all"); empty: the command takes no argument
    std::string_view help = {};    // one sentence for --help
    std::string_view missing = {}; // the usage error when it is absent
    SetValue set = nullptr;
};

// One command. A name that starts with "--" is a global flag (--help, --version): it stands alone, with no option
// and no argument after it, and the usage shows it as "sockredir-min --help | --version".
struct CommandSpec {
    std::string_view name;
    std::span<const std::string_view> aliases = {}; // other spellings ("-h", "help")
    std::string_view summary = {};                  // one sentence for --help
    std::span<const OptionSpec* const> options = {};
    PositionalSpec positional = {};
    // Prints the result and returns the exit code; throws base::Error on a failure.
    int (*handler)(const Command& c) = nullptr;
};

// Every command, in the order of the usage.
std::span<const CommandSpec> commands();

// Exit codes of the contract.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct ParseResult {
    std::optional<Command> command;
    std::string error; // set when command is empty: one line, for stderr
};

// Parses by the table: the command, then its options (--opt VALUE or --opt=VALUE, in any order, a later one
// overriding an earlier one) and its argument. "--help" or "-h" after a command asks for the usage.
ParseResult parse_command_line(const std::vector<std::string>& args);

// Runs the command's handler; prints results on stdout and the one-line reason of a failure on stderr (with
// describe_error's hint). Returns the exit code.
int run(const Command& command);

// The text of --help, generated from the table.
std::string usage();

extern const char* const kVersion;

} // namespace sockredir::app
