// sockredir's pin dir: where an attachment lives on bpffs, its staging dir, its lock, and reading it back.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "loader/base/fd.hpp"

namespace sockredir::app {

inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/sockredir";
// The cgroup link of the sock_ops program; the maps and programs are pinned under their own names.
inline constexpr const char* kPinLink = "sockops_link";
// The receive-path observer's link (BPF_RAW_TRACEPOINT_OPEN), when one could attach.
inline constexpr const char* kPinObserverLink = "observer_link";

// The paths of one pin dir. bpffs refuses names with dots, so the staging dir of an attach is a sibling named
// "<base>-attaching-<pid>", renamed into place when everything is pinned and attached.
class PinDir {
public:
    // `dir` empty: kDefaultPinDir. Trailing slashes are dropped; throws on a relative path or an invalid name.
    explicit PinDir(const std::string& dir);

    const std::string& path() const noexcept { return path_; }
    // The bpffs directory that holds it, and its last component.
    const std::string& parent() const noexcept { return parent_; }
    const std::string& base() const noexcept { return base_; }
    std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }

    std::string staging(int pid) const;
    // Staging dirs left in the parent by attaches that did not finish.
    std::vector<std::string> stale_staging() const;

private:
    std::string path_;
    std::string parent_;
    std::string base_;
};

// The config map pinned in `dir` and its value.
struct PinnedConfig {
    base::Fd map;
    sockredir_config value{};
};
std::optional<PinnedConfig> read_config(const std::string& dir);
void write_config(const PinnedConfig& config);

// What the pins of one directory say about an attachment.
struct Attachment {
    bool dir = false;       // the directory exists
    bool link = false;      // it holds the cgroup link
    uint32_t link_id = 0;   // the link's id
    uint64_t cgroup_id = 0; // 0: the link was detached from its cgroup
    bool draining = false;  // the config says draining: a detach began
};
Attachment read_attachment(const std::string& dir);

// What attach does about what it finds (the attach decision table, pure so that it is tested without a kernel).
enum class AttachDecision {
    Attach,          // nothing there: attach
    AlreadyAttached, // a live attachment to the same cgroup: change nothing
    OtherCgroup,     // a live attachment to another cgroup: refuse
    TakeDownFirst,   // a pin dir without a live attachment (interrupted attach or detach): take it down, attach
};
AttachDecision decide_attach(const Attachment& found, uint64_t cgroup_id);

} // namespace sockredir::app
