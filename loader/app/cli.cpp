// sockredir-min's commands: one table of commands and options; the usage, the checks and the dispatch come from it.
#include "loader/app/cli.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <exception>

#include "loader/app/attach.hpp"
#include "loader/app/check.hpp"
#include "loader/app/checked_attach.hpp"
#include "loader/app/contract.hpp"
#include "loader/app/embedded.hpp"
#include "loader/app/hints.hpp"
#include "loader/app/http.hpp"
#include "loader/app/list.hpp"
#include "loader/app/metrics.hpp"
#include "loader/app/pins.hpp"
#include "loader/app/run.hpp"
#include "loader/app/selftest.hpp"
#include "loader/app/stats.hpp"
#include "loader/app/status.hpp"
#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"
#include "loader/base/file.hpp"

namespace sockredir::app {

using base::Error;
using base::parse_decimal;
using base::read_file_bytes;

const char* const kVersion = "sockredir-min " SOCKREDIR_VERSION;

namespace {

// --- option values -----------------------------------------------------------------------------------------------

std::string set_cgroup(Command& c, std::string_view v)
{
    c.cgroup = v;
    return {};
}

std::string set_pin_dir(Command& c, std::string_view v)
{
    if (v[0] != '/')
        return "--pin-dir needs an absolute path";
    c.pin_dir = v;
    return {};
}

std::string set_object(Command& c, std::string_view v)
{
    c.object_file = v;
    return {};
}

std::string set_max_sockets(Command& c, std::string_view v)
{
    const auto n = parse_decimal(v);
    if (!n || *n == 0 || *n > kMaxSockets)
        return "--max-sockets needs a number from 1 to " + std::to_string(kMaxSockets);
    c.max_sockets = *n;
    return {};
}

std::string set_max_inflight(Command& c, std::string_view v)
{
    const auto n = parse_decimal(v);
    if (!n || *n < kMinInflight || *n > kMaxInflight)
        return "--max-inflight needs a number of bytes from " + std::to_string(kMinInflight) + " to " +
               std::to_string(kMaxInflight);
    c.max_inflight = *n;
    return {};
}

std::string set_port_list(Command& c, std::string_view v)
{
    const auto ports = parse_ports(v);
    if (!ports)
        return "--ports needs a list of ports 1-65535 and ranges, like 80,443,8000-8100";
    c.ports = *ports;
    return {};
}

std::string set_no_adaptive(Command& c, std::string_view)
{
    c.no_adaptive = true;
    return {};
}

std::string set_json(Command& c, std::string_view)
{
    c.json = true;
    return {};
}

std::string set_prometheus(Command& c, std::string_view)
{
    c.prometheus = true;
    return {};
}

std::string set_list_port(Command& c, std::string_view v)
{
    const auto n = parse_decimal(v, 5);
    if (!n || *n == 0 || *n > 65535)
        return "--port needs a port from 1 to 65535";
    c.list_port = static_cast<uint16_t>(*n);
    return {};
}

std::string set_metrics(Command& c, std::string_view v)
{
    if (auto error = check_listen_address(std::string(v)); !error.empty())
        return error;
    c.metrics = v;
    return {};
}

std::string set_sample(Command& c, std::string_view v)
{
    const auto n = parse_decimal(v);
    if (!n || *n == 0 || *n > kMaxSampleSeconds)
        return "--sample needs a number of seconds from 1 to " + std::to_string(kMaxSampleSeconds);
    c.sample_seconds = *n;
    return {};
}

std::string set_drain_timeout(Command& c, std::string_view v)
{
    const auto n = parse_decimal(v);
    if (!n || *n > kMaxDrainTimeoutSeconds)
        return "--drain-timeout needs a number of seconds from 0 to " + std::to_string(kMaxDrainTimeoutSeconds);
    c.drain_timeout_seconds = *n;
    return {};
}

// ports' argument: a list, or "all" for every port (c.ports stays empty).
std::string set_selection(Command& c, std::string_view v)
{
    if (v == "all")
        return {};
    const auto ports = parse_ports(v);
    if (!ports)
        return "ports needs a list of ports 1-65535 and ranges, like 80,443,8000-8100, or all";
    c.ports = *ports;
    return {};
}

// The help texts below name these values; a change here must change them too.
static_assert(std::string_view(kDefaultPinDir) == "/sys/fs/bpf/sockredir");
static_assert(kMaxSockets == 16777216 && SOCKREDIR_DEFAULT_MAX_SOCKETS == 65536);
static_assert(kMaxSampleSeconds == 3600);
static_assert(kMinInflight == 65536 && kMaxInflight == 1073741824);
static_assert(kDefaultDrainTimeout.count() == 5 && kMaxDrainTimeoutSeconds == 3600);

constexpr OptionSpec kCgroupOption{"--cgroup", "DIR", "the cgroup2 directory to attach to (default: the cgroup2 root)",
                                   set_cgroup};
constexpr OptionSpec kPinDirOption{"--pin-dir", "DIR",
                                   "where the pins are, an absolute path (default /sys/fs/bpf/sockredir)", set_pin_dir};
constexpr OptionSpec kObjectOption{"--object", "FILE",
                                   "load this build of bpf/sockredir.bpf.c instead of the embedded one (detach: its "
                                   "programs that hand connections back to TCP)",
                                   set_object};
constexpr OptionSpec kMaxSocketsOption{
    "--max-sockets", "N", "how many sockets the sockhash holds, 1 to 16777216 (default 65536)", set_max_sockets};
constexpr OptionSpec kMaxInflightOption{
    "--max-inflight", "BYTES",
    "flow control: how much a reader may leave unread before its sender is held back by TCP, 65536 to 1073741824 "
    "(default: the largest send buffer of net.ipv4.tcp_wmem)",
    set_max_inflight};
constexpr OptionSpec kPortsOption{"--ports", "LIST",
                                  "accelerate only connections with a local or remote port in LIST (like "
                                  "6379,5432,8000-8100); default: every same-host connection",
                                  set_port_list};
constexpr OptionSpec kNoAdaptiveOption{
    "--no-adaptive", "",
    "keep streams of small writes redirected (by default a connection that streams writes of 64 KiB or less "
    "without answers moves to TCP, which carries them faster)",
    set_no_adaptive};
constexpr OptionSpec kJsonOption{"--json", "", "print one JSON object, for machines", set_json};
constexpr OptionSpec kDrainTimeoutOption{
    "--drain-timeout", "SECONDS",
    "how long detach waits for connections with unread redirected data to be read before it leaves them in the "
    "map, 0 to 3600 (default 5)",
    set_drain_timeout};
constexpr OptionSpec kPrometheusOption{
    "--prometheus", "", "print the Prometheus text format (what run --metrics serves at /metrics)", set_prometheus};
constexpr OptionSpec kListPortOption{"--port", "N", "only the connections with port N at either end", set_list_port};
constexpr OptionSpec kMetricsOption{"--metrics", "HOST:PORT",
                                    "serve the metrics of status --prometheus over HTTP at HOST:PORT/metrics "
                                    "(like 127.0.0.1:9477 or [::1]:9477)",
                                    set_metrics};
constexpr OptionSpec kSampleOption{"--sample", "SECONDS",
                                   "measure the programs' runs and run time over SECONDS, 1 to 3600", set_sample};

constexpr PositionalSpec kSelection{"LIST|all", "the new port selection: a list as for --ports, or all for every port",
                                    "ports needs a list of ports (like 80,443,8000-8100) or all", set_selection};

// --- handlers ----------------------------------------------------------------------------------------------------

// The attach options of a command; `file` keeps an --object file's bytes alive.
AttachOptions attach_options(const Command& c, std::vector<std::byte>& file)
{
    AttachOptions o;
    o.cgroup = c.cgroup;
    o.pin_dir = c.pin_dir;
    o.max_sockets = c.max_sockets;
    o.max_inflight = c.max_inflight;
    o.ports = c.ports;
    o.no_adaptive = c.no_adaptive;
    if (!c.object_file.empty()) {
        file = read_file_bytes(c.object_file);
        o.object = file;
    } else {
        o.object = embedded_object();
    }
    return o;
}

int do_attach(const Command& c)
{
    std::vector<std::byte> file;
    const auto r = attach_or_verdict(attach_options(c, file));
    if (r.outcome == AttachOutcome::AlreadyAttached)
        std::printf("already attached to %s (pins in %s); nothing changed\n", r.cgroup.c_str(), r.pin_dir.c_str());
    else
        std::printf("attached to %s (pins in %s)\n", r.cgroup.c_str(), r.pin_dir.c_str());
    if (!r.no_evict.empty())
        std::printf("%s\n", no_evict_note(r.no_evict).c_str());
    print_defect_warnings(r);
    return kExitOk;
}

// The detach options of a command; `file` keeps an --object file's bytes alive (empty: the embedded object).
DetachOptions detach_options(const Command& c, const std::vector<std::byte>& file)
{
    DetachOptions o;
    o.timeout = std::chrono::seconds(c.drain_timeout_seconds);
    o.object = file;
    return o;
}

int do_detach(const Command& c)
{
    std::vector<std::byte> file;
    if (!c.object_file.empty())
        file = read_file_bytes(c.object_file);
    const auto options = detach_options(c, file);
    const auto r = detach(c.pin_dir, options);
    if (r.cleaned_stale > 0)
        std::printf("removed %d stale set(s) of pins left by an interrupted attach\n", r.cleaned_stale);
    if (r.outcome == DetachOutcome::Detached)
        std::printf("detached (removed %s)%s\n", r.pin_dir.c_str(), evict_summary(r.evict).c_str());
    else
        std::printf("not attached (no pins in %s); nothing to do\n", r.pin_dir.c_str());
    if (const auto failure = evict_failure(r.evict, options.timeout); !failure.empty()) {
        std::fflush(stdout);
        throw Error(failure);
    }
    return kExitOk;
}

int do_status(const Command& c)
{
    if (c.prometheus && (c.json || c.sample_seconds != 0)) {
        std::fprintf(stderr, "sockredir-min: status --prometheus takes neither --json nor --sample (see "
                             "sockredir-min --help)\n");
        return kExitUsage;
    }
    if (c.sample_seconds != 0) {
        // The kernel's run statistics are on for the window only, through an fd: never left on.
        const auto sample = sample_run_stats(c.pin_dir, c.sample_seconds);
        std::fputs((c.json ? format_sample_json(sample) : format_sample_text(sample)).c_str(), stdout);
        return kExitOk;
    }
    if (c.prometheus) {
        std::fputs(prometheus_metrics(c.pin_dir).c_str(), stdout);
        return kExitOk;
    }
    const auto s = read_status(c.pin_dir);
    std::fputs((c.json ? format_json(s) : format_text(s)).c_str(), stdout);
    return kExitOk;
}

int do_list(const Command& c)
{
    const auto l = list_connections(c.pin_dir, c.list_port);
    std::fputs((c.json ? format_list_json(l) : format_list_text(l)).c_str(), stdout);
    if (!l.complete) {
        std::fflush(stdout);
        std::fprintf(stderr, "sockredir-min: warning: connections came and went too fast to list them all; run "
                             "list again\n");
    }
    return kExitOk;
}

int do_check(const Command& c)
{
    // The requirements come from the object: the embedded one, or another build of it (--object).
    std::vector<std::byte> file;
    if (!c.object_file.empty())
        file = read_file_bytes(c.object_file);
    const auto object = c.object_file.empty() ? embedded_object() : std::span<const std::byte>(file);
    auto report = probe_kernel(object);
    probe_beyond(report);
    std::fputs(format_report(report).c_str(), stdout);
    // The differences from TCP this kernel leaves open, proven live; the verdict does not depend on them.
    std::fflush(stdout);
    const auto blocked = blocking_feature(report);
    const auto selftests = blocked ? selftests_not_run("needs " + *blocked) : run_selftests(object, SelfTestScope::All);
    std::fputs(format_selftests(selftests).c_str(), stdout);
    if (can_run(report))
        return kExitOk;
    std::fflush(stdout);
    std::fprintf(stderr, "sockredir-min: %s\n", verdict(report).c_str());
    return kExitFailure;
}

int do_run(const Command& c)
{
    std::vector<std::byte> file;
    const auto attach = attach_options(c, file);
    run_foreground(attach, detach_options(c, file), c.metrics);
    return kExitOk;
}

int do_ports(const Command& c)
{
    const auto r = set_ports(c.pin_dir, c.ports);
    switch (r.outcome) {
    case PortsOutcome::NotAttached:
        throw Error("not attached (no pins in " + r.pin_dir + ")");
    case PortsOutcome::Unchanged:
        std::printf("ports: %s (unchanged)\n", r.after.c_str());
        return kExitOk;
    case PortsOutcome::Changed:
        std::printf("ports: %s (was %s); new connections follow it, established ones keep their path\n",
                    r.after.c_str(), r.before.c_str());
        return kExitOk;
    }
    return kExitFailure;
}

int do_help(const Command&)
{
    std::fputs(usage().c_str(), stdout);
    return kExitOk;
}

int do_version(const Command&)
{
    std::printf("%s\n", kVersion);
    return kExitOk;
}

// --- the table ---------------------------------------------------------------------------------------------------

constexpr const OptionSpec* kAttachOptions[] = {&kCgroupOption,     &kPinDirOption, &kObjectOption,
                                                &kMaxSocketsOption, &kPortsOption,  &kMaxInflightOption,
                                                &kNoAdaptiveOption};
constexpr const OptionSpec* kRunOptions[] = {&kCgroupOption,     &kPinDirOption,       &kObjectOption,
                                             &kMaxSocketsOption, &kPortsOption,        &kMaxInflightOption,
                                             &kNoAdaptiveOption, &kDrainTimeoutOption, &kMetricsOption};
constexpr const OptionSpec* kDetachOptions[] = {&kPinDirOption, &kObjectOption, &kDrainTimeoutOption};
constexpr const OptionSpec* kPinDirOnly[] = {&kPinDirOption};
constexpr const OptionSpec* kCheckOptions[] = {&kObjectOption};
constexpr const OptionSpec* kStatusOptions[] = {&kPinDirOption, &kJsonOption, &kSampleOption, &kPrometheusOption};
constexpr const OptionSpec* kListOptions[] = {&kPinDirOption, &kJsonOption, &kListPortOption};
constexpr std::string_view kHelpAliases[] = {"-h", "help"};
constexpr std::string_view kVersionAliases[] = {"-V"};

constexpr CommandSpec kCommands[] = {
    {.name = "attach",
     .summary = "load the programs, attach them to the cgroup and pin them under the pin dir",
     .options = kAttachOptions,
     .handler = do_attach},
    {.name = "detach",
     .summary = "stop redirecting, hand every connection back to TCP once its redirected data is read, and remove "
                "everything attach created",
     .options = kDetachOptions,
     .handler = do_detach},
    {.name = "status",
     .summary = "show whether it is attached, ids, sockets in the map and counters",
     .options = kStatusOptions,
     .handler = do_status},
    {.name = "list",
     .summary = "show each connection sockredir took, like ss: endpoints, namespace, processes, and for each "
                "direction its path (redirected, or TCP and why), what was redirected and what is unread",
     .options = kListOptions,
     .handler = do_list},
    {.name = "check",
     .summary = "tell whether this kernel can run sockredir: one line per feature the object needs, a verdict",
     .options = kCheckOptions,
     .handler = do_check},
    {.name = "run",
     .summary = "attach, stay in the foreground until SIGTERM or SIGINT, then detach",
     .options = kRunOptions,
     .handler = do_run},
    {.name = "ports",
     .summary = "change the port selection of the attachment, live: connections established from now on follow it, "
                "established ones keep their path",
     .options = kPinDirOnly,
     .positional = kSelection,
     .handler = do_ports},
    {.name = "--help", .aliases = kHelpAliases, .summary = "show this text", .handler = do_help},
    {.name = "--version", .aliases = kVersionAliases, .summary = "show the version", .handler = do_version},
};

constexpr std::string_view kAbout = "Redirects TCP data between sockets on this host straight into the peer socket "
                                    "(sock_ops + sk_msg, SOCKHASH), skipping the TCP/IP stack.";

// --- parsing -----------------------------------------------------------------------------------------------------

bool is_global_flag(const CommandSpec& spec)
{
    return spec.name.starts_with("--");
}

bool is_spelling(const CommandSpec& spec, std::string_view word)
{
    return spec.name == word || std::find(spec.aliases.begin(), spec.aliases.end(), word) != spec.aliases.end();
}

const CommandSpec* find_command(std::string_view word)
{
    for (const auto& spec : kCommands)
        if (is_spelling(spec, word))
            return &spec;
    return nullptr;
}

const OptionSpec* find_option(const CommandSpec& spec, std::string_view name)
{
    for (const OptionSpec* o : spec.options)
        if (o->name == name)
            return o;
    return nullptr;
}

ParseResult usage_error(const std::string& message)
{
    ParseResult r;
    r.error = message + " (see sockredir-min --help)";
    return r;
}

// --- usage -------------------------------------------------------------------------------------------------------

constexpr size_t kColumns = 79;

// Appends head, then text wrapped at kColumns, its further lines indented by head's width.
void append_wrapped(std::string& out, const std::string& head, std::string_view text)
{
    const std::string indent(head.size(), ' ');
    std::string line = head;
    bool first = true;
    while (!text.empty()) {
        const auto space = text.find(' ');
        const auto word = text.substr(0, space);
        text = space == std::string_view::npos ? std::string_view() : text.substr(space + 1);
        if (!first && line.size() + 1 + word.size() > kColumns) {
            out += line + "\n";
            line = indent;
        } else if (!first) {
            line += ' ';
        }
        line += word;
        first = false;
    }
    out += line + "\n";
}

std::string label(const OptionSpec& o)
{
    return o.value.empty() ? std::string(o.name) : std::string(o.name) + " " + std::string(o.value);
}

std::string padded(std::string text, size_t width)
{
    text.resize(std::max(width, text.size()), ' ');
    return text;
}

} // namespace

std::span<const CommandSpec> commands()
{
    return kCommands;
}

ParseResult parse_command_line(const std::vector<std::string>& args)
{
    if (args.empty())
        return usage_error("missing command");
    const std::string& verb = args[0];
    const CommandSpec* spec = find_command(verb);
    if (spec == nullptr)
        return usage_error("unknown command '" + verb + "'");
    Command c;
    c.verb = spec->name;
    if (is_global_flag(*spec)) {
        if (args.size() > 1)
            return usage_error("unexpected argument '" + args[1] + "'");
        return {c, {}};
    }

    const CommandSpec& help = *find_command("--help");
    bool have_positional = false;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (!spec->positional.name.empty() && !have_positional && !arg.empty() && arg[0] != '-') {
            have_positional = true;
            if (auto error = spec->positional.set(c, arg); !error.empty())
                return usage_error(error);
            continue;
        }
        // --opt=value splits at the first '='.
        std::string name = arg;
        std::string value;
        bool has_value = false;
        if (arg.starts_with("--")) {
            if (const auto eq = arg.find('='); eq != std::string::npos) {
                name = arg.substr(0, eq);
                value = arg.substr(eq + 1);
                has_value = true;
            }
        }
        if (name.starts_with("-") && is_spelling(help, name)) {
            c.verb = help.name;
            return {c, {}};
        }
        const OptionSpec* option = find_option(*spec, name);
        if (option == nullptr) {
            if (name.starts_with("-"))
                return usage_error("unknown option '" + name + "' for " + verb);
            return usage_error("unexpected argument '" + name + "'");
        }
        const bool takes_value = !option->value.empty();
        if (takes_value && !has_value) {
            if (i + 1 >= args.size())
                return usage_error("option " + name + " needs a value");
            value = args[++i];
        }
        if (!takes_value && has_value)
            return usage_error("option " + name + " takes no value");
        if (takes_value && value.empty())
            return usage_error("option " + name + " needs a non-empty value");
        if (auto error = option->set(c, value); !error.empty())
            return usage_error(error);
    }
    if (!spec->positional.name.empty() && !have_positional)
        return usage_error(std::string(spec->positional.missing));
    return {c, {}};
}

std::string usage()
{
    std::string out;
    std::string flags;
    for (const auto& spec : kCommands) {
        if (is_global_flag(spec)) {
            flags += (flags.empty() ? "" : " | ") + std::string(spec.name);
            continue;
        }
        out += out.empty() ? "usage: " : "       ";
        out += "sockredir-min " + std::string(spec.name);
        for (const OptionSpec* o : spec.options)
            out += " [" + label(*o) + "]";
        if (!spec.positional.name.empty())
            out += " " + std::string(spec.positional.name);
        out += "\n";
    }
    out += "       sockredir-min " + flags + "\n\n";
    append_wrapped(out, "", kAbout);

    out += "\n";
    size_t width = 0;
    for (const auto& spec : kCommands)
        width = std::max(width, spec.name.size());
    for (const auto& spec : kCommands)
        append_wrapped(out, "  " + padded(std::string(spec.name), width) + "  ", spec.summary);

    // Every option and argument once, in the order of their first use.
    std::vector<std::pair<std::string, std::string_view>> helps;
    for (const auto& spec : kCommands) {
        for (const OptionSpec* o : spec.options)
            helps.emplace_back(label(*o), o->help);
        if (!spec.positional.name.empty())
            helps.emplace_back(spec.positional.name, spec.positional.help);
    }
    std::vector<std::pair<std::string, std::string_view>> unique;
    for (const auto& h : helps)
        if (std::find(unique.begin(), unique.end(), h) == unique.end())
            unique.push_back(h);
    width = 0;
    for (const auto& [name, text] : unique)
        width = std::max(width, name.size());
    out += "\n";
    for (const auto& [name, text] : unique)
        append_wrapped(out, "  " + padded(name, width) + "  ", text);

    out += "\nExit codes: " + std::to_string(kExitOk) + " success, " + std::to_string(kExitFailure) +
           " failure (reason on stderr), " + std::to_string(kExitUsage) + " usage error.\n";
    return out;
}

int run(const Command& c)
{
    const CommandSpec* spec = find_command(c.verb);
    if (spec == nullptr || spec->name != c.verb) {
        std::fprintf(stderr, "sockredir-min: internal error: no command '%.*s'\n", static_cast<int>(c.verb.size()),
                     c.verb.data());
        return kExitFailure;
    }
    try {
        return spec->handler(c);
    } catch (const Error& e) {
        if (!e.log().empty()) {
            // The verifier's own words travel in the error; the command line is where they are shown.
            std::fputs("--- verifier log ---\n", stderr);
            std::fputs(e.log().c_str(), stderr);
            if (e.log().back() != '\n')
                std::fputc('\n', stderr);
            std::fputs("--- end of verifier log ---\n", stderr);
        }
        std::fprintf(stderr, "sockredir-min: %s\n", describe_error(e).c_str());
        return kExitFailure;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sockredir-min: internal error: %s\n", e.what());
        return kExitFailure;
    }
}

} // namespace sockredir::app
