// The differences from TCP that this kernel's sockmap path leaves open, proven live: probes of a few ms on loopback
// pairs in a forked child with a network namespace, a mount namespace and a cgroup of its own, removed on every path.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace sockredir::app {

struct AttachResult;

// What one probe looks for: the one table of them (defect_specs()), in report order.
struct DefectSpec {
    const char* name;      // "blocking-read-eagain"
    uint32_t bit;          // SOCKREDIR_DEFECT_*, in sockredir_config.defects
    const char* behaviour; // the warning's words: "this kernel's sockmap path <behaviour>; affects: <patterns>"
    const char* patterns;  // the application patterns a present defect breaks
    // Probed through an attachment of sockredir's own object (an attach's cost: check runs it, attach does not).
    bool needs_attach;
    // Bites only where connections are redirected: not where no receive-path observer loads.
    bool needs_redirect;
};
std::span<const DefectSpec> defect_specs();
inline constexpr size_t kDefectCount = 8; // rows of defect_specs()

enum class DefectState { Present, Absent, NotProbed };

struct DefectFinding {
    const DefectSpec* spec = nullptr;
    DefectState state = DefectState::NotProbed;
    std::string detail; // what the probe saw ("30 EAGAIN in 31 ms"), or why it did not run
};

struct SelfTestReport {
    std::array<DefectFinding, kDefectCount> findings; // one per defect_specs() row, in its order
    unsigned elapsed_ms = 0;                          // wall time of the whole set
};

enum class SelfTestScope {
    All,   // every probe: check
    Cheap, // those that attach nothing (needs_attach false): attach and run, which must stay fast
};

// The probes running in a child of their own: the constructor forks it and returns at once, so that attach can load
// its programs meanwhile; finish() collects the findings. The child holds the namespaces, the mounts (private to its
// mount namespace: the bpffs of its own attachment, cgroup2 where none is mounted) and its cgroup; the parent
// removes whatever the child left, by the child's pid, however it ended (killed after its time, or by a signal),
// and first what earlier runs that were killed themselves left. The destructor kills and cleans up an unfinished run.
class SelfTestRun {
public:
    // How long the child may take before it is killed: far beyond what the probes take (well under a second here), so
    // that a slow machine (an emulated VM reads the kernel's BTF for seconds) still finishes them; the cheap probe
    // alone is bounded tighter, since attach waits for it.
    static constexpr int kTimeoutMs = 20000;
    static constexpr int kCheapTimeoutMs = 3000;

    // `object`: the attachment's object for the probes that need one (All).
    SelfTestRun(std::span<const std::byte> object, SelfTestScope scope);
    SelfTestRun(const SelfTestRun&) = delete;
    SelfTestRun& operator=(const SelfTestRun&) = delete;
    ~SelfTestRun();
    // Once only.
    SelfTestReport finish();

private:
    int clean_up(); // reaps the child, removes what it left; its wait status

    SelfTestScope scope_ = SelfTestScope::All;
    pid_t pid_ = -1;
    int out_ = -1;            // the read end of the child's report pipe
    std::string start_error_; // why no child could be started
    long long started_us_ = 0;
    bool cgroup_removed_ = false; // the child said it removed its cgroup
};

// A run, finished.
SelfTestReport run_selftests(std::span<const std::byte> object, SelfTestScope scope);
// Every probe not run, for `why` ("needs privileges").
SelfTestReport selftests_not_run(const std::string& why);

// --- the pure part ---------------------------------------------------------------------------------------------------

// The report as sockredir_config.defects: bit b present, bit b << SOCKREDIR_DEFECT_PROBED_SHIFT probed.
uint32_t defect_bits(const SelfTestReport& report);
// check's section: a heading with the time taken, then one line per probe ("  NAME  present: DETAIL; affects: ...").
std::string format_selftests(const SelfTestReport& report);
// attach's and run's stderr: one line per defect present in `bits`, "sockredir-min: warning: this kernel's sockmap
// path ...; affects: ...\n", and one for each probe attach runs that could not run ("... the self-test could not tell
// whether this kernel's sockmap path ..."); those that need redirection left out when `redirecting` is false (no
// observer).
std::string defect_warnings(uint32_t bits, bool redirecting);
// A new attachment's warnings on stderr, one line each: no observer, an option hook not linked, and its self-test
// findings; none for one found in place (its attach told already). attach and run call it.
void print_defect_warnings(const AttachResult& result);
// status: "blocking-read-eagain, close-unread-fin" or "none found", then what was not probed in parentheses; "not
// recorded" when nothing was probed.
std::string format_defects(uint32_t bits);
// The names of the defects whose bits are in `set` (present bits; for those probed, bits >> PROBED_SHIFT), in table
// order: "a, b", or "\"a\",\"b\"" for JSON.
std::string defect_list(uint32_t set, bool json);

} // namespace sockredir::app
