// Unit tests of loader/app/cli: the command table, parse_command_line's every option and usage error, the usage.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "loader/app/cli.hpp"

using namespace sockredir;
using namespace sockredir::app;

namespace {

using Args = std::vector<std::string>;

Command parsed(const Args& args)
{
    const auto r = parse_command_line(args);
    INFO("error: " << r.error);
    REQUIRE(r.command.has_value());
    CHECK(r.error.empty());
    return *r.command;
}

// The one-line usage error for `args`; fails the test when they parse.
std::string usage_error(const Args& args)
{
    const auto r = parse_command_line(args);
    CHECK_FALSE(r.command.has_value());
    CHECK(r.error.find("(see sockredir-min --help)") != std::string::npos);
    CHECK(r.error.find('\n') == std::string::npos);
    return r.error;
}

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
        const auto end = text.find('\n', start);
        lines.push_back(text.substr(start, end - start));
        if (end == std::string::npos)
            break;
        start = end + 1;
    }
    return lines;
}

} // namespace

TEST_CASE("attach without options keeps every default")
{
    const auto c = parsed({"attach"});
    CHECK(c.verb == "attach");
    CHECK(c.cgroup.empty());
    CHECK(c.pin_dir.empty());
    CHECK(c.object_file.empty());
    CHECK(c.max_sockets == 0);
    CHECK_FALSE(c.json);
}

TEST_CASE("attach takes --cgroup, --pin-dir, --object and --max-sockets as separate arguments")
{
    const auto c = parsed({"attach", "--cgroup", "/sys/fs/cgroup/test", "--pin-dir", "/sys/fs/bpf/t", "--object",
                           "obj.o", "--max-sockets", "4096"});
    CHECK(c.verb == "attach");
    CHECK(c.cgroup == "/sys/fs/cgroup/test");
    CHECK(c.pin_dir == "/sys/fs/bpf/t");
    CHECK(c.object_file == "obj.o");
    CHECK(c.max_sockets == 4096);
}

TEST_CASE("attach takes every option in the --opt=value form")
{
    const auto c = parsed({"attach", "--cgroup=/cg", "--pin-dir=/pins", "--object=/a/b=c.o", "--max-sockets=7"});
    CHECK(c.cgroup == "/cg");
    CHECK(c.pin_dir == "/pins");
    // Only the first '=' splits.
    CHECK(c.object_file == "/a/b=c.o");
    CHECK(c.max_sockets == 7);
}

TEST_CASE("a later option overrides an earlier one")
{
    const auto c = parsed({"attach", "--pin-dir", "/one", "--pin-dir=/two"});
    CHECK(c.pin_dir == "/two");
}

TEST_CASE("detach takes --pin-dir and --drain-timeout SECONDS, 0 to 3600, default 5")
{
    CHECK(parsed({"detach"}).verb == "detach");
    CHECK(parsed({"detach"}).pin_dir.empty());
    CHECK(parsed({"detach"}).drain_timeout_seconds == 5);
    CHECK(parsed({"detach", "--drain-timeout", "0"}).drain_timeout_seconds == 0);
    CHECK(parsed({"detach", "--drain-timeout=3600"}).drain_timeout_seconds == 3600);
    for (const char* bad : {"3601", "-1", "1.5", "5s", "x"}) {
        CAPTURE(bad);
        CHECK(usage_error({"detach", "--drain-timeout", bad})
                  .find("--drain-timeout needs a number of seconds from 0 "
                        "to 3600") == 0);
    }
    CHECK(usage_error({"attach", "--drain-timeout", "1"}).find("unknown option '--drain-timeout' for attach") == 0);
    const auto c = parsed({"detach", "--pin-dir", "/sys/fs/bpf/x"});
    CHECK(c.verb == "detach");
    CHECK(c.pin_dir == "/sys/fs/bpf/x");
    CHECK(parsed({"detach", "--pin-dir=/p"}).pin_dir == "/p");
}

TEST_CASE("status takes --pin-dir and --json")
{
    const auto plain = parsed({"status"});
    CHECK(plain.verb == "status");
    CHECK_FALSE(plain.json);
    const auto c = parsed({"status", "--json", "--pin-dir", "/p"});
    CHECK(c.verb == "status");
    CHECK(c.json);
    CHECK(c.pin_dir == "/p");
}

TEST_CASE("status takes --sample SECONDS, 1 to 3600, and no other command does")
{
    CHECK(parsed({"status"}).sample_seconds == 0);
    CHECK(parsed({"status", "--sample", "1"}).sample_seconds == 1);
    CHECK(parsed({"status", "--sample=3600", "--json"}).sample_seconds == 3600);
    CHECK(parsed({"status", "--json", "--sample", "0060"}).json);
    for (const char* bad : {"0", "3601", "-1", "+5", "1s", " 5", "1.5", "4294967296"}) {
        CAPTURE(bad);
        CHECK(usage_error({"status", "--sample", bad}).find("--sample needs a number of seconds from 1 to 3600") == 0);
    }
    CHECK(usage_error({"status", "--sample"}).find("option --sample needs a value") == 0);
    CHECK(usage_error({"status", "--sample="}).find("option --sample needs a non-empty value") == 0);
    for (const char* verb : {"attach", "detach", "run", "check"}) {
        CAPTURE(verb);
        CHECK(usage_error({verb, "--sample", "5"}).find(std::string("unknown option '--sample' for ") + verb) == 0);
    }
}

TEST_CASE("status --sample is refused with exit 1 until the sampling exists")
{
    CHECK(run(parsed({"status", "--sample", "5", "--pin-dir", "/nonexistent/sockredir-test"})) == kExitFailure);
}

TEST_CASE("--help, -h and help ask for the usage; --version and -V for the version")
{
    for (const char* arg : {"--help", "-h", "help"})
        CHECK(parsed({arg}).verb == "--help");
    for (const char* arg : {"--version", "-V"})
        CHECK(parsed({arg}).verb == "--version");
    CHECK(usage().find("sockredir-min attach") != std::string::npos);
    CHECK(std::string(kVersion).find("sockredir-min") == 0);
}

TEST_CASE("--help after a verb asks for the usage")
{
    CHECK(parsed({"attach", "--cgroup", "/x", "--help"}).verb == "--help");
    CHECK(parsed({"status", "-h"}).verb == "--help");
    CHECK(parsed({"detach", "--help"}).verb == "--help");
}

TEST_CASE("no arguments at all is a usage error")
{
    CHECK(usage_error({}).find("missing command") == 0);
}

TEST_CASE("an unknown command is a usage error")
{
    CHECK(usage_error({"frobnicate"}).find("unknown command 'frobnicate'") == 0);
    CHECK(usage_error({"Attach"}).find("unknown command 'Attach'") == 0);
    CHECK(usage_error({"--pin-dir", "/p"}).find("unknown command '--pin-dir'") == 0);
}

TEST_CASE("an unknown option is a usage error naming the option and the verb")
{
    CHECK(usage_error({"attach", "--force"}).find("unknown option '--force' for attach") == 0);
    CHECK(usage_error({"status", "-j"}).find("unknown option '-j' for status") == 0);
    CHECK(usage_error({"detach", "--pin-dirx=/p"}).find("unknown option '--pin-dirx' for detach") == 0);
}

TEST_CASE("an option of another verb is a usage error")
{
    CHECK(usage_error({"detach", "--cgroup", "/x"}).find("unknown option '--cgroup' for detach") == 0);
    CHECK(usage_error({"detach", "--json"}).find("unknown option '--json' for detach") == 0);
    CHECK(usage_error({"status", "--object", "o"}).find("unknown option '--object' for status") == 0);
    CHECK(usage_error({"status", "--max-sockets=5"}).find("unknown option '--max-sockets' for status") == 0);
    CHECK(usage_error({"attach", "--json"}).find("unknown option '--json' for attach") == 0);
}

TEST_CASE("an option without its value is a usage error")
{
    for (const char* opt : {"--cgroup", "--pin-dir", "--object", "--max-sockets"}) {
        CAPTURE(opt);
        CHECK(usage_error({"attach", opt}).find(std::string("option ") + opt + " needs a value") == 0);
        CHECK(usage_error({"attach", std::string(opt) + "="})
                  .find(std::string("option ") + opt + " needs a non-empty value") == 0);
        CHECK(usage_error({"attach", opt, ""}).find(std::string("option ") + opt + " needs a non-empty value") == 0);
    }
    CHECK(usage_error({"detach", "--pin-dir"}).find("option --pin-dir needs a value") == 0);
}

TEST_CASE("a value given to a flag is a usage error")
{
    CHECK(usage_error({"status", "--json=yes"}).find("option --json takes no value") == 0);
}

TEST_CASE("a relative --pin-dir is a usage error")
{
    CHECK(usage_error({"attach", "--pin-dir", "sys/fs/bpf/x"}).find("--pin-dir needs an absolute path") == 0);
    CHECK(usage_error({"detach", "--pin-dir=./pins"}).find("--pin-dir needs an absolute path") == 0);
    CHECK(usage_error({"status", "--pin-dir", "pins"}).find("--pin-dir needs an absolute path") == 0);
}

TEST_CASE("--max-sockets accepts 1 to 16777216 in decimal")
{
    CHECK(parsed({"attach", "--max-sockets", "1"}).max_sockets == 1);
    CHECK(parsed({"attach", "--max-sockets", "16777216"}).max_sockets == 16777216U);
    CHECK(parsed({"attach", "--max-sockets", "0065536"}).max_sockets == 65536);
}

TEST_CASE("a bad --max-sockets is a usage error")
{
    for (const char* bad :
         {"0", "-1", "+5", "12x", "0x10", " 5", "16777217", "4294967295", "4294967296", "99999999999", "1e6", "3.5"}) {
        CAPTURE(bad);
        CHECK(usage_error({"attach", "--max-sockets", bad}).find("--max-sockets needs a number from 1 to 16777216") ==
              0);
    }
}

TEST_CASE("an extra positional argument is a usage error")
{
    CHECK(usage_error({"attach", "extra"}).find("unexpected argument 'extra'") == 0);
    CHECK(usage_error({"status", "--json", "now"}).find("unexpected argument 'now'") == 0);
    CHECK(usage_error({"detach", "--pin-dir", "/p", "again"}).find("unexpected argument 'again'") == 0);
    CHECK(usage_error({"--help", "attach"}).find("unexpected argument 'attach'") == 0);
    CHECK(usage_error({"--version", "x"}).find("unexpected argument 'x'") == 0);
}

TEST_CASE("check takes no option but --help")
{
    CHECK(parsed({"check"}).verb == "check");
    CHECK(parsed({"check", "--help"}).verb == "--help");
    CHECK(usage_error({"check", "--pin-dir", "/p"}).find("unknown option '--pin-dir' for check") == 0);
    CHECK(usage_error({"check", "--json"}).find("unknown option '--json' for check") == 0);
    CHECK(usage_error({"check", "now"}).find("unexpected argument 'now'") == 0);
}

TEST_CASE("run takes the options of attach and detach's --drain-timeout, and no other")
{
    const auto plain = parsed({"run"});
    CHECK(plain.verb == "run");
    CHECK(plain.cgroup.empty());
    CHECK(plain.pin_dir.empty());
    const auto c = parsed({"run", "--cgroup", "/cg", "--pin-dir=/pins", "--object", "o.o", "--max-sockets", "9"});
    CHECK(c.verb == "run");
    CHECK(c.cgroup == "/cg");
    CHECK(c.pin_dir == "/pins");
    CHECK(c.object_file == "o.o");
    CHECK(c.max_sockets == 9);
    CHECK(c.drain_timeout_seconds == 5);
    CHECK(parsed({"run", "--drain-timeout", "30"}).drain_timeout_seconds == 30);
    CHECK(usage_error({"run", "--json"}).find("unknown option '--json' for run") == 0);
    CHECK(usage_error({"run", "--pin-dir", "pins"}).find("--pin-dir needs an absolute path") == 0);
    CHECK(usage_error({"run", "--max-sockets", "0"}).find("--max-sockets needs a number") == 0);
}

TEST_CASE("the usage names every command of the table, with its options and argument")
{
    const std::string text = usage();
    const auto lines = lines_of(text);
    std::string flags_line;
    for (const auto& spec : commands()) {
        CAPTURE(spec.name);
        if (spec.name.starts_with("--")) {
            // Global flags share one line: "sockredir-min --help | --version".
            CHECK(spec.options.empty());
            CHECK(spec.positional.name.empty());
            const auto it = std::find_if(lines.begin(), lines.end(), [](const std::string& l) {
                return l.find("sockredir-min --") != std::string::npos;
            });
            REQUIRE(it != lines.end());
            CHECK(it->find(std::string(spec.name)) != std::string::npos);
            continue;
        }
        // Its synopsis line, with every option in table order and its argument last.
        const std::string head = "sockredir-min " + std::string(spec.name);
        const auto it = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) {
            const auto at = l.find(head);
            return at != std::string::npos && l.size() >= at + head.size() &&
                   (l.size() == at + head.size() || l[at + head.size()] == ' ');
        });
        REQUIRE(it != lines.end());
        std::string expected = head;
        for (const OptionSpec* o : spec.options)
            expected += " [" + std::string(o->name) + (o->value.empty() ? "" : " " + std::string(o->value)) + "]";
        if (!spec.positional.name.empty())
            expected += " " + std::string(spec.positional.name);
        CHECK(it->substr(it->find(head)) == expected);
        // Its summary line, and a help line for each of its options.
        CHECK(text.find("\n  " + std::string(spec.name) + " ") != std::string::npos);
        for (const OptionSpec* o : spec.options) {
            CAPTURE(o->name);
            CHECK_FALSE(o->help.empty());
            CHECK(text.find("\n  " + std::string(o->name) + (o->value.empty() ? " " : " " + std::string(o->value))) !=
                  std::string::npos);
        }
    }
    // Below the synopsis (which is the README's, one line per command), the text fits 79 columns.
    const auto blank = std::find(lines.begin(), lines.end(), std::string());
    for (auto it = blank; it != lines.end(); ++it) {
        CAPTURE(*it);
        CHECK(it->size() <= 79);
    }
}

TEST_CASE("every command of the table parses by its name and each alias, and nothing else does")
{
    for (const auto& spec : commands()) {
        CAPTURE(spec.name);
        const bool has_handler = spec.handler != nullptr;
        CHECK(has_handler);
        std::vector<std::string> spellings{std::string(spec.name)};
        spellings.insert(spellings.end(), spec.aliases.begin(), spec.aliases.end());
        for (const auto& word : spellings) {
            CAPTURE(word);
            if (spec.positional.name.empty()) {
                CHECK(parsed({word}).verb == spec.name);
            } else {
                // A required argument: without it, a usage error that says what it needs.
                CHECK(usage_error({word}).find(std::string(spec.positional.missing)) == 0);
            }
        }
    }
    CHECK_FALSE(parse_command_line({"attach-all"}).command.has_value());
    CHECK_FALSE(parse_command_line({"-help"}).command.has_value());
}

TEST_CASE("--ports takes ports and ranges for attach and run, and nothing else")
{
    const auto c = parsed({"attach", "--ports", "6379,8000-8100,443"});
    REQUIRE(c.ports.size() == 3);
    CHECK(c.ports[0] == std::pair<uint16_t, uint16_t>{6379, 6379});
    CHECK(c.ports[1] == std::pair<uint16_t, uint16_t>{8000, 8100});
    CHECK(c.ports[2] == std::pair<uint16_t, uint16_t>{443, 443});
    CHECK(parsed({"run", "--ports=1-65535"}).ports.size() == 1);
    CHECK(parsed({"attach"}).ports.empty());
    CHECK(usage_error({"attach", "--ports", ""}).find("--ports needs a non-empty value") != std::string::npos);
    for (const char* bad : {"0", "65536", "80,", ",80", "80-", "-80", "90-80", "8o", "80 ,81", "1-2-3"}) {
        CAPTURE(bad);
        CHECK(usage_error({"attach", "--ports", bad}).find("--ports needs a list") == 0);
    }
    CHECK(usage_error({"detach", "--ports", "80"}).find("unknown option '--ports'") == 0);
    CHECK(usage_error({"status", "--ports", "80"}).find("unknown option '--ports'") == 0);
}

TEST_CASE("--no-adaptive is a flag of attach and run, and nothing else")
{
    CHECK(parsed({"attach", "--no-adaptive"}).no_adaptive);
    CHECK(parsed({"run", "--no-adaptive", "--ports", "80"}).no_adaptive);
    CHECK_FALSE(parsed({"attach"}).no_adaptive);
    CHECK(usage_error({"detach", "--no-adaptive"}).find("unknown option '--no-adaptive'") == 0);
    CHECK(usage_error({"status", "--no-adaptive"}).find("unknown option '--no-adaptive'") == 0);
}

TEST_CASE("ports takes one selection, a list or all, and --pin-dir")
{
    const auto c = parsed({"ports", "6379,8000-8100"});
    CHECK(c.verb == "ports");
    REQUIRE(c.ports.size() == 2);
    CHECK(c.ports[1] == std::pair<uint16_t, uint16_t>{8000, 8100});
    CHECK(c.pin_dir.empty());
    const auto all = parsed({"ports", "--pin-dir", "/sys/fs/bpf/x", "all"});
    CHECK(all.verb == "ports");
    CHECK(all.ports.empty()); // every port
    CHECK(all.pin_dir == "/sys/fs/bpf/x");
    CHECK(parsed({"ports", "80", "--pin-dir=/p"}).pin_dir == "/p");
    CHECK(usage_error({"ports"}).find("ports needs a list of ports") == 0);
    CHECK(usage_error({"ports", "--pin-dir", "/p"}).find("ports needs a list of ports") == 0);
    for (const char* bad : {"0", "65536", "80,", "90-80", "ALL", "none"}) {
        CAPTURE(bad);
        CHECK(usage_error({"ports", bad}).find("ports needs a list of ports") == 0);
    }
    CHECK(usage_error({"ports", "80", "81"}).find("unexpected argument '81'") == 0);
    CHECK(usage_error({"ports", "all", "all"}).find("unexpected argument 'all'") == 0);
    CHECK(usage_error({"ports", "--ports", "80"}).find("unknown option '--ports'") == 0);
    CHECK(usage_error({"ports", "--json", "80"}).find("unknown option '--json'") == 0);
    CHECK(usage_error({"ports", "--cgroup", "/c", "80"}).find("unknown option '--cgroup'") == 0);
    // A selection is no argument of any other verb.
    CHECK(usage_error({"detach", "80"}).find("unexpected argument '80'") == 0);
}
