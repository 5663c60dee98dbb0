// attach: plan -> maps -> programs -> pins in a staging dir -> attach -> rename into place. detach undoes it by pins
// alone.
#include "loader/app/attach.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <iterator>
#include <optional>

#include "bpf/sockredir_shared.h"
#include "loader/app/contract.hpp"
#include "loader/app/pins.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/mounts.hpp"
#include "loader/ebpf/pin.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;

namespace {

// Stop redirection of new messages: the sk_msg program sends them by TCP from
// now on, and never switches those sockets back (see bpf/sockredir.bpf.c).
void set_draining(const std::string& dir)
{
    auto c = read_config(dir);
    if (!c)
        return;
    c->value.flags |= SOCKREDIR_F_DRAINING;
    write_config(*c);
}

std::string hook_warning(const char* program, const char* why)
{
    return std::string(program) + " not attached (" + why + "): " + without_program(program);
}

void detach_link(const std::string& dir, const char* pin)
{
    const auto path = dir + "/" + pin;
    if (!ebpf::pin_exists(path))
        return;
    Fd link = sys::obj_get(path);
    // Detach even if another process still holds the link open.
    sys::link_detach(link.get());
}

// The detach steps for one directory of pins, published or staging. The order matters: draining first, so that no
// message is redirected any more; the link next, so that no socket enters the map any more; then the sockets go
// back to TCP, each once its redirected data is read; the pins last.
EvictResult take_down(const std::string& dir, std::chrono::milliseconds timeout, std::span<const std::byte> object)
{
    Eviction eviction(dir, object); // loaded while the programs still redirect: no time taken from the drain
    set_draining(dir);
    const auto drained_at = std::chrono::steady_clock::now();
    step_done("drain");
    detach_link(dir, kPinLink);
    for (const auto& hook : kOptionHooks)
        detach_link(dir, hook.link_pin);
    step_done("detach_sockops");
    const auto evicted = eviction.run(drained_at, timeout);
    step_done("evict");
    ebpf::unpin_dir(dir);
    step_done("unpin");
    return evicted;
}

// Taking down on the way to an attach waits for no reader: one run of the eviction, and what is left stays.
constexpr std::chrono::milliseconds kNoWait{0};

// Pins left behind by an attach that was killed before it published them.
int clean_stale_staging(const PinDir& p, std::chrono::milliseconds timeout, std::span<const std::byte> object)
{
    const auto stale = p.stale_staging();
    for (const auto& dir : stale)
        take_down(dir, timeout, object);
    return static_cast<int>(stale.size());
}

// Whether loading the spec's programs resolves anything against the kernel's BTF (CO-RE or a tracing target).
bool needs_kernel_btf(const ebpf::CollectionSpec& spec)
{
    for (const auto& p : spec.programs)
        if (!p.core_relos.empty() || p.type == BPF_PROG_TYPE_TRACING)
            return true;
    return false;
}

uint64_t cgroup_id_of(const std::string& dir)
{
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0)
        throw Error("stat", "cgroup " + dir, errno);
    // On cgroup2 the inode number of a cgroup directory is its cgroup id.
    return st.st_ino;
}

} // namespace

void step_done(const char* step)
{
    static const char* target = std::getenv("SOCKREDIR_TEST_KILL_AFTER");
    if (target != nullptr && std::strcmp(target, step) == 0)
        ::kill(::getpid(), SIGKILL);
}

AttachResult attach(const AttachOptions& options)
{
    const PinDir p(options.pin_dir);
    // Parse and check before touching the system: a bad object changes nothing.
    // The eviction programs are detach's, loaded then: attach loads what it attaches.
    const ebpf::CollectionSpec spec =
        sockredir_spec(options.object, {options.max_sockets, options.max_inflight, options.ports, options.no_adaptive})
            .subset(attached_programs());
    step_done("plan");

    AttachResult result;
    result.pin_dir = p.path();
    if (options.cgroup.empty()) {
        result.cgroup = ebpf::cgroup2_root(true);
    } else {
        result.cgroup = options.cgroup;
        while (result.cgroup.size() > 1 && result.cgroup.back() == '/')
            result.cgroup.pop_back();
    }
    ebpf::check_cgroup2_dir(result.cgroup);
    ebpf::ensure_bpffs(p.path(), true);

    ebpf::DirLock lock(p.parent());
    clean_stale_staging(p, kNoWait, options.object);

    switch (decide_attach(read_attachment(p.path()), cgroup_id_of(result.cgroup))) {
    case AttachDecision::AlreadyAttached:
        result.outcome = AttachOutcome::AlreadyAttached;
        return result;
    case AttachDecision::OtherCgroup:
        throw Error("already attached to another cgroup (pins in " + p.path() + "); run detach first");
    case AttachDecision::TakeDownFirst:
        // A pin dir without a live link is not ours to trust: take it down first.
        take_down(p.path(), kNoWait, options.object);
        break;
    case AttachDecision::Attach:
        break;
    }

    Fd cgroup(::open(result.cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cgroup)
        throw Error("open", "cgroup " + result.cgroup, errno);

    ebpf::Collection c = ebpf::create_maps(spec);
    step_done("maps");
    // CO-RE relocations and tracing targets resolve against the kernel's BTF: read it once, for every step.
    std::optional<elf::Btf> kernel_btf;
    ebpf::LoadOptions load;
    if (needs_kernel_btf(spec)) {
        kernel_btf = ebpf::read_kernel_btf();
        load.kernel = &*kernel_btf;
    }
    load.programs.assign(std::begin(kRequiredPrograms), std::end(kRequiredPrograms));
    ebpf::load_programs(spec, c, load);
    // The observer: the first variant this kernel loads and attaches (a kernel may load an fexit program and refuse
    // its trampoline). Without one, sockredir cannot tell how readers read, so no direction is ever redirected;
    // attach still succeeds (nothing an application sees changes) and says so. Its link runs from here on, and does
    // nothing until a socket has sockredir's storage; it is pinned with the rest, or closed with this process.
    Fd observer_link;
    for (const char* name : kObserverPrograms) {
        if (!spec.programs.contains(name))
            continue;
        load.programs = {name};
        try {
            ebpf::load_programs(spec, c, load);
            observer_link = sys::raw_tracepoint_open(c.programs.at(name).fd.get());
            result.observer = name;
            break;
        } catch (const Error& e) {
            c.programs.erase(name); // loaded but not attachable: neither pinned nor kept
            if (!result.no_observer_reason.empty())
                result.no_observer_reason += "; ";
            result.no_observer_reason += e.what();
        }
    }
    // The option hooks: each one that loads narrows a difference from TCP; attach goes on without it and says so.
    std::vector<const char*> hooks;
    for (const auto& hook : kOptionHooks) {
        if (!spec.programs.contains(hook.program))
            continue;
        load.programs = {hook.program};
        try {
            ebpf::load_programs(spec, c, load);
            hooks.push_back(hook.link_pin);
        } catch (const Error& e) {
            result.missing_hooks.push_back(hook_warning(hook.program, e.what()));
        }
    }
    kernel_btf.reset();
    step_done("programs");
    // Both eviction programs read the psock by CO-RE: without the kernel's BTF neither loads (an access(2) here;
    // detach tells the rest).
    if (::access(ebpf::kKernelBtfPath, R_OK) != 0)
        result.no_evict = std::string("this kernel has no BTF, ") + ebpf::kKernelBtfPath +
                          ", which the programs that hand them back to TCP need";

    const std::string staging = p.staging(::getpid());
    if (::mkdir(staging.c_str(), 0700) != 0)
        throw Error("mkdir", "creating " + staging, errno);
    try {
        for (const auto& m : c.maps)
            sys::obj_pin(m.fd.get(), staging + "/" + m.name);
        for (const auto& prog : c.programs)
            sys::obj_pin(prog.fd.get(), staging + "/" + prog.name);
        step_done("pin");

        const auto& msg = c.programs.at(SOCKREDIR_PROG_MSG);
        sys::prog_attach(msg.fd.get(), c.maps.at(SOCKREDIR_MAP_SOCKS).fd.get(), msg.attach_type, 0);
        step_done("attach_msg");

        // Before any socket enters the map: the observer is what lets a direction leave TCP.
        if (observer_link) {
            try {
                sys::obj_pin(observer_link.get(), staging + "/" + kPinObserverLink);
            } catch (const Error& e) {
                result.no_observer_reason = e.what();
                result.observer.clear();
            }
        }
        step_done("attach_observer");

        // Before sockops too: an option set on a socket in the map must find its hook there.
        for (const auto& hook : kOptionHooks) {
            if (std::find(hooks.begin(), hooks.end(), hook.link_pin) == hooks.end())
                continue;
            const auto& prog = c.programs.at(hook.program);
            try {
                Fd hook_link = sys::link_create(prog.fd.get(), cgroup.get(), prog.attach_type);
                sys::obj_pin(hook_link.get(), staging + "/" + hook.link_pin);
            } catch (const Error& e) {
                result.missing_hooks.push_back(hook_warning(hook.program, e.what()));
            }
        }
        step_done("attach_hooks");

        // A cgroup link attaches like BPF_F_ALLOW_MULTI: other programs on
        // this cgroup keep running, and the attachment lives as long as the pin.
        const auto& sockops = c.programs.at(SOCKREDIR_PROG_SOCKOPS);
        Fd link = sys::link_create(sockops.fd.get(), cgroup.get(), sockops.attach_type);
        sys::obj_pin(link.get(), staging + "/" + kPinLink);
        step_done("attach_sockops");

        if (::rename(staging.c_str(), p.path().c_str()) != 0)
            throw Error("rename", "publishing pins as " + p.path(), errno);
        step_done("publish");
    } catch (...) {
        try {
            take_down(staging, kNoWait, options.object);
        } catch (...) {
            // The next attach or detach finds the staging dir and retries.
        }
        throw;
    }
    return result;
}

PortsResult set_ports(const std::string& pin_dir, const PortRanges& ports)
{
    const PinDir p(pin_dir);
    PortsResult result;
    result.pin_dir = p.path();
    if (!ebpf::is_bpffs(p.parent()))
        return result;
    // Serialized with attach and detach: a detach cannot set draining between the read and the write below.
    ebpf::DirLock lock(p.parent());
    if (!ebpf::pin_exists(p.path()))
        return result;
    auto c = read_config(p.path());
    if (!c)
        throw Error("the pins in " + p.path() + " have no config map; run detach, then attach again");
    if ((c->value.flags & SOCKREDIR_F_DRAINING) != 0)
        throw Error("a detach of the pins in " + p.path() + " was interrupted; run detach, then attach again");
    result.before = format_ports(c->value);
    sockredir_config next = c->value;
    replace_ports(ports, next);
    result.after = format_ports(next);
    if (std::memcmp(&next, &c->value, sizeof(next)) == 0) {
        result.outcome = PortsOutcome::Unchanged;
        return result;
    }
    // One BPF_MAP_UPDATE_ELEM: sock_ops reads one word of the bitmap per port, old or new.
    c->value = next;
    write_config(*c);
    result.outcome = PortsOutcome::Changed;
    return result;
}

void record_defects(const std::string& pin_dir, uint32_t defects)
{
    const PinDir p(pin_dir);
    if (!ebpf::is_bpffs(p.parent()))
        return;
    // Serialized with ports, attach and detach, which write the same value.
    ebpf::DirLock lock(p.parent());
    if (!ebpf::pin_exists(p.path()))
        return;
    auto c = read_config(p.path());
    if (!c || (c->value.flags & SOCKREDIR_F_DRAINING) != 0)
        return;
    c->value.defects = defects;
    write_config(*c);
}

DetachResult detach(const std::string& pin_dir, const DetachOptions& options)
{
    const PinDir p(pin_dir);
    DetachResult result;
    result.pin_dir = p.path();
    if (!ebpf::is_bpffs(p.parent()))
        return result; // nothing can be pinned there: nothing attached
    ebpf::DirLock lock(p.parent());
    result.cleaned_stale = clean_stale_staging(p, options.timeout, options.object);
    if (!ebpf::pin_exists(p.path()))
        return result;
    result.evict = take_down(p.path(), options.timeout, options.object);
    result.outcome = DetachOutcome::Detached;
    return result;
}

} // namespace sockredir::app
