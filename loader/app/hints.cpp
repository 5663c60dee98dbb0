// The hint table: what each kernel refusal means for the operator, decided by (call, errno) alone.
#include "loader/app/hints.hpp"

#include <algorithm>
#include <cerrno>

namespace sockredir::app {

namespace {

// The bpf(2) commands that refuse, with EINVAL, a program, map or attach type (or a flag) this kernel does not
// know. Elsewhere EINVAL means a bad argument of ours, and no guess about the kernel is made.
constexpr std::string_view kCreatingCommands[] = {
    "BPF_MAP_CREATE", "BPF_PROG_LOAD", "BPF_BTF_LOAD", "BPF_PROG_ATTACH", "BPF_LINK_CREATE",
};

constexpr ErrorHint kHints[] = {
    // What bpf(2) and mount(2) say without privileges (EACCES is the verifier's).
    {EPERM, {}, "needs root: CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN"},
    // Map memory is charged to the memory cgroup of the process that creates the map.
    {ENOMEM, {}, "the kernel could not allocate it: lower --max-sockets or raise this process's memory limit"},
    // bpf(2) says E2BIG when the request has fields this kernel does not know.
    {E2BIG, {}, "this kernel is older than sockredir needs: Linux 5.15 or newer"},
    {EINVAL, kCreatingCommands,
     "this kernel lacks a feature sockredir needs: Linux 5.15+, CONFIG_CGROUP_BPF, CONFIG_NET_SOCK_MSG"},
    {ENOSYS, {}, "this kernel has no bpf(2): CONFIG_BPF_SYSCALL is off"},
};

bool matches(const ErrorHint& hint, std::string_view call, int code)
{
    if (hint.code != code)
        return false;
    return hint.calls.empty() || std::find(hint.calls.begin(), hint.calls.end(), call) != hint.calls.end();
}

} // namespace

std::span<const ErrorHint> error_hints()
{
    return kHints;
}

const char* hint_for(std::string_view call, int code)
{
    for (const auto& hint : kHints)
        if (matches(hint, call, code))
            return hint.text.data(); // each text is a literal: NUL-terminated
    return nullptr;
}

const char* hint_for(const base::Error& e)
{
    return hint_for(e.call(), e.code());
}

std::string describe_error(const base::Error& e)
{
    std::string line = e.what();
    if (const char* hint = hint_for(e))
        return line + " (" + hint + ")";
    return line;
}

} // namespace sockredir::app
