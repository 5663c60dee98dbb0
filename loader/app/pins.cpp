// The pin dir's paths and its state read back from the pins alone.
#include "loader/app/pins.hpp"

#include "loader/base/error.hpp"
#include "loader/ebpf/pin.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
namespace sys = ebpf::sys;

PinDir::PinDir(const std::string& dir)
{
    path_ = dir.empty() ? kDefaultPinDir : dir;
    while (path_.size() > 1 && path_.back() == '/')
        path_.pop_back();
    if (path_.empty() || path_[0] != '/')
        throw Error("pin dir " + path_ + ": must be an absolute path");
    const auto slash = path_.find_last_of('/');
    parent_ = slash == 0 ? "/" : path_.substr(0, slash);
    base_ = path_.substr(slash + 1);
    if (base_.empty() || base_ == "." || base_ == "..")
        throw Error("pin dir " + path_ + ": not a valid directory name");
}

std::string PinDir::staging(int pid) const
{
    return parent_ + "/" + base_ + "-attaching-" + std::to_string(pid);
}

std::vector<std::string> PinDir::stale_staging() const
{
    std::vector<std::string> stale;
    const auto prefix = base_ + "-attaching-";
    for (const auto& name : ebpf::list_dir(parent_))
        if (name.rfind(prefix, 0) == 0)
            stale.push_back(parent_ + "/" + name);
    return stale;
}

std::optional<PinnedConfig> read_config(const std::string& dir)
{
    const auto path = dir + "/" + SOCKREDIR_MAP_CONFIG;
    if (!ebpf::pin_exists(path))
        return std::nullopt;
    PinnedConfig c{sys::obj_get(path)};
    const uint32_t zero = 0;
    if (!sys::map_lookup(c.map.get(), &zero, &c.value))
        throw Error("the config map pinned at " + path + " has no entry 0");
    return c;
}

void write_config(const PinnedConfig& config)
{
    const uint32_t zero = 0;
    sys::map_update(config.map.get(), &zero, &config.value, BPF_ANY);
}

Attachment read_attachment(const std::string& dir)
{
    Attachment a;
    a.dir = ebpf::pin_exists(dir);
    if (!a.dir)
        return a;
    const auto link_path = dir + "/" + kPinLink;
    if (ebpf::pin_exists(link_path)) {
        base::Fd link = sys::obj_get(link_path);
        const auto info = sys::link_info(link.get());
        a.link = true;
        a.link_id = info.id;
        a.cgroup_id = info.cgroup.cgroup_id;
    }
    const auto config = read_config(dir);
    a.draining = config && (config->value.flags & SOCKREDIR_F_DRAINING) != 0;
    return a;
}

AttachDecision decide_attach(const Attachment& found, uint64_t cgroup_id)
{
    if (!found.dir)
        return AttachDecision::Attach;
    // A detach killed after "drain" or "detach_sockops" leaves the programs draining or the link detached from
    // every cgroup (id 0): that is no attachment, and neither is a pin dir without a link.
    if (!found.link || found.cgroup_id == 0 || found.draining)
        return AttachDecision::TakeDownFirst;
    return found.cgroup_id == cgroup_id ? AttachDecision::AlreadyAttached : AttachDecision::OtherCgroup;
}

} // namespace sockredir::app
