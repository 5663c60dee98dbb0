// attach: plan -> maps -> programs -> pins in a staging dir -> attach -> rename into place. detach undoes it by pins
// alone.
#include "loader/app/attach.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "bpf/sockredir_shared.h"
#include "loader/app/contract.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/mounts.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;
using ebpf::cgroup2_root;
using ebpf::check_cgroup2_dir;
using ebpf::ensure_bpffs;
using ebpf::is_bpffs;

namespace {

struct PinPaths {
    std::string dir;    // the published pin dir
    std::string parent; // the bpffs directory that holds it
    std::string base;   // its last component
};

PinPaths pin_paths(const std::string& pin_dir)
{
    std::string dir = pin_dir.empty() ? kDefaultPinDir : pin_dir;
    while (dir.size() > 1 && dir.back() == '/')
        dir.pop_back();
    if (dir.empty() || dir[0] != '/')
        throw Error("pin dir " + dir + ": must be an absolute path");
    const auto slash = dir.find_last_of('/');
    PinPaths p;
    p.dir = dir;
    p.parent = slash == 0 ? "/" : dir.substr(0, slash);
    p.base = dir.substr(slash + 1);
    if (p.base.empty() || p.base == "." || p.base == "..")
        throw Error("pin dir " + dir + ": not a valid directory name");
    return p;
}

// bpffs refuses names with dots, so the staging dir is a sibling with a suffix.
std::string staging_prefix(const PinPaths& p)
{
    return p.base + "-attaching-";
}

// Serializes attach and detach on one pin dir: flock on the bpffs directory.
class DirLock {
public:
    explicit DirLock(const std::string& dir)
    {
        fd_ = Fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!fd_)
            throw Error("opening " + dir, errno);
        while (::flock(fd_.get(), LOCK_EX) != 0)
            if (errno != EINTR)
                throw Error("locking " + dir, errno);
    }

private:
    Fd fd_;
};

void pin(const Fd& fd, const std::string& dir, const std::string& name)
{
    sys::obj_pin(fd.get(), dir + "/" + name);
}

// The config map pinned in `dir` with its value; nothing when the dir has no config pin.
struct PinnedConfig {
    Fd map;
    sockredir_config value{};
};

std::optional<PinnedConfig> pinned_config(const std::string& dir)
{
    const auto path = dir + "/" + SOCKREDIR_MAP_CONFIG;
    if (!pin_exists(path))
        return std::nullopt;
    PinnedConfig c{sys::obj_get(path)};
    const uint32_t zero = 0;
    sys::map_lookup(c.map.get(), &zero, &c.value);
    return c;
}

// Stop redirection of new messages: the sk_msg program sends them by TCP from
// now on, and never switches those sockets back (see bpf/sockredir.bpf.c).
void set_draining(const std::string& dir)
{
    auto c = pinned_config(dir);
    if (!c)
        return;
    c->value.flags |= SOCKREDIR_F_DRAINING;
    const uint32_t zero = 0;
    sys::map_update(c->map.get(), &zero, &c->value, BPF_ANY);
}

bool is_draining(const std::string& dir)
{
    const auto c = pinned_config(dir);
    return c && (c->value.flags & SOCKREDIR_F_DRAINING) != 0;
}

void detach_link(const std::string& dir)
{
    const auto path = dir + "/" + kPinLink;
    if (!pin_exists(path))
        return;
    Fd link = sys::obj_get(path);
    // Detach even if another process still holds the link open.
    sys::link_detach(link.get());
}

// Removes every pin and the directory itself.
void unpin_all(const std::string& dir)
{
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
        if (errno == ENOENT)
            return;
        throw Error("opening " + dir, errno);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != "..")
            names.push_back(name);
    }
    ::closedir(d);
    for (const auto& name : names)
        if (::unlink((dir + "/" + name).c_str()) != 0 && errno != ENOENT)
            throw Error("removing pin " + dir + "/" + name, errno);
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT)
        throw Error("removing " + dir, errno);
}

// The detach steps for one directory of pins, published or staging.
void take_down(const std::string& dir)
{
    set_draining(dir);
    step_done("drain");
    detach_link(dir);
    step_done("detach_sockops");
    unpin_all(dir);
    step_done("unpin");
}

// Pins left behind by an attach that was killed before it published them.
int clean_stale_staging(const PinPaths& p)
{
    DIR* d = ::opendir(p.parent.c_str());
    if (d == nullptr)
        throw Error("opening " + p.parent, errno);
    std::vector<std::string> stale;
    const auto prefix = staging_prefix(p);
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.rfind(prefix, 0) == 0)
            stale.push_back(p.parent + "/" + name);
    }
    ::closedir(d);
    for (const auto& dir : stale)
        take_down(dir);
    return static_cast<int>(stale.size());
}

uint64_t cgroup_id_of(const std::string& dir)
{
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0)
        throw Error("cgroup " + dir, errno);
    // On cgroup2 the inode number of a cgroup directory is its cgroup id.
    return st.st_ino;
}

} // namespace

bool pin_exists(const std::string& path)
{
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0)
        return true;
    if (errno == ENOENT || errno == ENOTDIR)
        return false;
    throw Error("cannot read pins at " + path, errno);
}

void step_done(const char* step)
{
    static const char* target = std::getenv("SOCKREDIR_TEST_KILL_AFTER");
    if (target != nullptr && std::strcmp(target, step) == 0)
        ::kill(::getpid(), SIGKILL);
}

AttachResult attach(const AttachOptions& options)
{
    const PinPaths p = pin_paths(options.pin_dir);
    // Parse and check before touching the system: a bad object changes nothing.
    const ebpf::CollectionSpec spec = sockredir_spec(options.object, {options.max_sockets, options.ports});
    step_done("plan");

    AttachResult result;
    result.pin_dir = p.dir;
    if (options.cgroup.empty()) {
        result.cgroup = cgroup2_root(true);
    } else {
        result.cgroup = options.cgroup;
        while (result.cgroup.size() > 1 && result.cgroup.back() == '/')
            result.cgroup.pop_back();
    }
    check_cgroup2_dir(result.cgroup);
    ensure_bpffs(p.dir, true);

    DirLock lock(p.parent);
    clean_stale_staging(p);

    if (pin_exists(p.dir)) {
        if (pin_exists(p.dir + "/" + kPinLink)) {
            Fd link = sys::obj_get(p.dir + "/" + kPinLink);
            const auto info = sys::link_info(link.get());
            // A detach killed after "drain" or "detach_sockops" leaves the programs draining or the link
            // detached from every cgroup (id 0): that is no attachment, finish taking it down below.
            const bool interrupted_detach = info.cgroup.cgroup_id == 0 || is_draining(p.dir);
            if (!interrupted_detach) {
                if (info.cgroup.cgroup_id == cgroup_id_of(result.cgroup)) {
                    result.outcome = AttachOutcome::AlreadyAttached;
                    return result;
                }
                throw Error("already attached to another cgroup (pins in " + p.dir + "); run detach first");
            }
        }
        // A pin dir without a live link is not ours to trust: take it down first.
        take_down(p.dir);
    }

    Fd cgroup(::open(result.cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cgroup)
        throw Error("opening cgroup " + result.cgroup, errno);

    ebpf::Collection c = ebpf::create_maps(spec);
    step_done("maps");
    ebpf::load_programs(spec, c);
    step_done("programs");

    const std::string staging = p.parent + "/" + staging_prefix(p) + std::to_string(::getpid());
    if (::mkdir(staging.c_str(), 0700) != 0)
        throw Error("creating " + staging, errno);
    try {
        for (const auto& m : c.maps)
            pin(m.fd, staging, m.name);
        for (const auto& prog : c.programs)
            pin(prog.fd, staging, prog.name);
        step_done("pin");

        const auto& msg = c.programs.at(SOCKREDIR_PROG_MSG);
        sys::prog_attach(msg.fd.get(), c.maps.at(SOCKREDIR_MAP_SOCKS).fd.get(), msg.attach_type, 0);
        step_done("attach_msg");

        // A cgroup link attaches like BPF_F_ALLOW_MULTI: other programs on
        // this cgroup keep running, and the attachment lives as long as the pin.
        const auto& sockops = c.programs.at(SOCKREDIR_PROG_SOCKOPS);
        Fd link = sys::link_create(sockops.fd.get(), cgroup.get(), sockops.attach_type);
        pin(link, staging, kPinLink);
        step_done("attach_sockops");

        if (::rename(staging.c_str(), p.dir.c_str()) != 0)
            throw Error("publishing pins as " + p.dir, errno);
        step_done("publish");
    } catch (...) {
        try {
            take_down(staging);
        } catch (...) {
            // The next attach or detach finds the staging dir and retries.
        }
        throw;
    }
    return result;
}

PortsResult set_ports(const std::string& pin_dir, const PortRanges& ports)
{
    const PinPaths p = pin_paths(pin_dir);
    PortsResult result;
    result.pin_dir = p.dir;
    if (!is_bpffs(p.parent))
        return result;
    // Serialized with attach and detach: a detach cannot set draining between the read and the write below.
    DirLock lock(p.parent);
    if (!pin_exists(p.dir))
        return result;
    auto c = pinned_config(p.dir);
    if (!c)
        throw Error("the pins in " + p.dir + " have no config map; run detach, then attach again");
    if ((c->value.flags & SOCKREDIR_F_DRAINING) != 0)
        throw Error("a detach of the pins in " + p.dir + " was interrupted; run detach, then attach again");
    result.before = format_ports(c->value);
    sockredir_config next = c->value;
    replace_ports(ports, next);
    result.after = format_ports(next);
    if (std::memcmp(&next, &c->value, sizeof(next)) == 0) {
        result.outcome = PortsOutcome::Unchanged;
        return result;
    }
    // One BPF_MAP_UPDATE_ELEM: sock_ops reads one word of the bitmap per port, old or new.
    const uint32_t zero = 0;
    sys::map_update(c->map.get(), &zero, &next, BPF_ANY);
    result.outcome = PortsOutcome::Changed;
    return result;
}

DetachResult detach(const std::string& pin_dir)
{
    const PinPaths p = pin_paths(pin_dir);
    DetachResult result;
    result.pin_dir = p.dir;
    if (!is_bpffs(p.parent))
        return result; // nothing can be pinned there: nothing attached
    DirLock lock(p.parent);
    result.cleaned_stale = clean_stale_staging(p);
    if (!pin_exists(p.dir))
        return result;
    take_down(p.dir);
    result.outcome = DetachOutcome::Detached;
    return result;
}

} // namespace sockredir::app
