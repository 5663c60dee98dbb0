// Kernel feature probes: tiny programs and maps built here and handed to loader/sys, plus the verdict over them.
#include "loader/app/probe.hpp"

#include <linux/bpf.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>
#include <optional>

#include "loader/base/error.hpp"
#include "loader/base/fd.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/btf.hpp"
#include "loader/ebpf/mounts.hpp"
#include "loader/ebpf/sys.hpp"

namespace sockredir::app {

using base::Error;
using base::Fd;
namespace sys = ebpf::sys;
using base::read_file_text;
using ebpf::find_cgroup2_mount;
using ebpf::is_bpffs;
using ebpf::kBtfIntTypeId;
using ebpf::kDefaultBpffs;
using ebpf::minimal_btf;

namespace {

// What provides each group of features; the verdict repeats these.
constexpr const char* kHintBpf = "CONFIG_BPF_SYSCALL=y";
constexpr const char* kHintPrivileges = "needs root: CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN";
constexpr const char* kHintKernel = "Linux 5.15+ with CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF, CONFIG_NET_SOCK_MSG";
constexpr const char* kHintCgroup2 = "CONFIG_CGROUPS=y";

constexpr const char* kLicense = "Dual MIT/GPL";

// --- instructions, built as plain bpf_insn values ---------------------------------------------------------------

using Insns = std::vector<bpf_insn>;

bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    bpf_insn i{};
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
    return i;
}

void mov_imm(Insns& p, uint8_t dst, int32_t imm)
{
    p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm));
}

void mov_reg(Insns& p, uint8_t dst, uint8_t src)
{
    p.push_back(insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0));
}

void add_imm(Insns& p, uint8_t dst, int32_t imm)
{
    p.push_back(insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm));
}

// ld_imm64 of a map: two slots, the kernel resolves src_reg = BPF_PSEUDO_MAP_FD + imm = fd to the map.
void ld_map(Insns& p, uint8_t dst, int map_fd)
{
    p.push_back(insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, map_fd));
    p.push_back(insn(0, 0, 0, 0, 0));
}

void store_word(Insns& p, uint8_t base, int16_t off, int32_t imm)
{
    p.push_back(insn(BPF_ST | BPF_MEM | BPF_W, base, 0, off, imm));
}

void load_dword(Insns& p, uint8_t dst, uint8_t base, int16_t off)
{
    p.push_back(insn(BPF_LDX | BPF_MEM | BPF_DW, dst, base, off, 0));
}

void jump_if_zero(Insns& p, uint8_t reg, int16_t skip)
{
    p.push_back(insn(BPF_JMP | BPF_JEQ | BPF_K, reg, 0, skip, 0));
}

void call(Insns& p, int32_t helper)
{
    p.push_back(insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper));
}

// r0 = 1 (SK_PASS for sk_msg, "carry on" for sock_ops); exit.
void finish(Insns& p)
{
    mov_imm(p, BPF_REG_0, 1);
    p.push_back(insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
}

// r10 - 4 holds a zeroed 4-byte key; r<dst> points at it.
void zero_key(Insns& p, uint8_t dst)
{
    store_word(p, BPF_REG_10, -4, 0);
    mov_reg(p, dst, BPF_REG_10);
    add_imm(p, dst, -4);
}

// --- one probe ------------------------------------------------------------------------------------------------------

std::string errno_text(int err)
{
    return err == 0 ? std::string("failed") : std::string(std::strerror(err));
}

std::string hint_for(int err, const char* kernel_hint)
{
    // EPERM refuses the caller (capabilities, lockdown, an LSM), not the feature; the verifier's EACCES is the
    // kernel's answer about the program, like EINVAL.
    return err == EPERM ? kHintPrivileges : kernel_hint;
}

Feature ok(std::string name, std::string detail = {})
{
    return {std::move(name), FeatureState::Ok, std::move(detail), {}};
}

Feature missing(std::string name, std::string detail, std::string hint)
{
    return {std::move(name), FeatureState::Missing, std::move(detail), std::move(hint)};
}

Feature not_probed(std::string name, const std::string& because)
{
    return {std::move(name), FeatureState::NotProbed, "needs " + because, {}};
}

struct Loaded {
    Fd fd;
    int err = 0;
    std::string detail;
};

Loaded load(uint32_t type, const Insns& insns, const char* name)
{
    sys::ProgLoadArgs args;
    args.type = type;
    // As the loader does (loader/plan.cpp): sk_msg programs say where they will be attached.
    args.expected_attach_type = type == BPF_PROG_TYPE_SK_MSG ? BPF_SK_MSG_VERDICT : 0;
    args.insns = insns;
    args.license = kLicense;
    args.name = name;
    Loaded r;
    try {
        r.fd = sys::prog_load(args);
        return r;
    } catch (const Error& e) {
        r.err = e.code();
    }
    // Again with the verifier log, for the verifier's own words.
    std::vector<char> log(16384);
    args.log = log;
    args.log_level = 1;
    try {
        r.fd = sys::prog_load(args); // a transient failure: count it as loaded
        r.err = 0;
        return r;
    } catch (const Error&) {
    }
    const auto line = verifier_reason({log.data(), ::strnlen(log.data(), log.size())});
    r.detail = "BPF_PROG_LOAD: " + errno_text(r.err) + (line.empty() ? "" : " (" + line + ")");
    return r;
}

Feature program_feature(std::string name, uint32_t type, const Insns& insns, const char* hint, Fd* keep = nullptr)
{
    auto r = load(type, insns, "sr_probe");
    if (!r.fd)
        return missing(std::move(name), r.detail, hint_for(r.err, hint));
    if (keep != nullptr)
        *keep = std::move(r.fd);
    return ok(std::move(name));
}

Feature map_feature(std::string name, const sys::MapCreateArgs& args, Fd& keep)
{
    try {
        keep = sys::map_create(args);
        return ok(std::move(name));
    } catch (const Error& e) {
        return missing(std::move(name), "BPF_MAP_CREATE: " + errno_text(e.code()), hint_for(e.code(), kHintKernel));
    }
}

// --- privileges -----------------------------------------------------------------------------------------------------

bool has_cap(const __user_cap_data_struct (&data)[2], int cap)
{
    return (data[cap / 32].effective & (1U << (cap % 32))) != 0;
}

// Which of the effective capabilities attach needs this process lacks; nothing when it has them all.
std::optional<std::string> missing_capabilities()
{
    __user_cap_header_struct header{};
    header.version = _LINUX_CAPABILITY_VERSION_3;
    header.pid = 0;
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) != 0)
        return "capget: " + errno_text(errno);
    std::string lacking;
    // CAP_SYS_ADMIN stands in for CAP_BPF (bpf_capable()) on every kernel, and mounting needs it anyway.
    for (const auto& [cap, name] : {std::pair{CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}})
        if (!has_cap(data, cap))
            lacking += (lacking.empty() ? "" : ", ") + std::string(name);
    if (lacking.empty())
        return std::nullopt;
    return "lacking " + lacking;
}

// --- filesystems ----------------------------------------------------------------------------------------------------

std::string read_or_empty(const char* path)
{
    try {
        return read_file_text(path);
    } catch (const Error&) {
        return {};
    }
}

// A filesystem that is not mounted: fine when the kernel knows it, since attach mounts it (`where`).
Feature mountable(const std::string& name, const char* fs, const std::string& where, const char* hint)
{
    const auto filesystems = read_or_empty("/proc/filesystems");
    if (filesystems.empty())
        return missing(name, "cannot read /proc/filesystems", "mount /proc");
    if (has_filesystem(filesystems, fs))
        return ok(name, "not mounted; attach mounts it " + where);
    return missing(name, "not in /proc/filesystems", hint);
}

Feature cgroup2_feature()
{
    const std::string name = "cgroup2 (mounted or mountable)";
    if (const auto found = find_cgroup2_mount(read_or_empty("/proc/self/mountinfo")))
        return ok(name, "mounted at " + *found);
    return mountable(name, "cgroup2", "under /sys/fs/cgroup", kHintCgroup2);
}

Feature bpffs_feature()
{
    const std::string name = "bpffs (mounted or mountable)";
    if (is_bpffs(kDefaultBpffs))
        return ok(name, std::string("mounted at ") + kDefaultBpffs);
    return mountable(name, "bpf", std::string("at ") + kDefaultBpffs, kHintBpf);
}

// --- the kernel probes, once bpf(2) answers and the caller may use it -----------------------------------------------

// Runs the probes in order and records each feature. A feature whose prerequisite is missing (or all of them, when
// `blocked` says bpf(2) cannot be used at all) is recorded as not probed, under the same name.
class Prober {
public:
    Prober(std::vector<Feature>& out, std::optional<std::string> blocked) : out_(out), blocked_(std::move(blocked)) {}

    // Loads insns() as a program of `type` unless one of `needs` (fd, its feature's name) is missing.
    void program(std::string name, uint32_t type, const std::function<Insns()>& insns,
                 std::initializer_list<std::pair<const Fd*, const char*>> needs, Fd* keep = nullptr)
    {
        if (skipped(name, needs))
            return;
        out_.push_back(program_feature(std::move(name), type, insns(), kHintKernel, keep));
    }

    void map(std::string name, const std::function<sys::MapCreateArgs()>& args, Fd& keep)
    {
        if (skipped(name, {}))
            return;
        try {
            out_.push_back(map_feature(std::move(name), args(), keep));
        } catch (const Error& e) { // preparing the arguments failed (BTF)
            out_.push_back(missing(std::move(name), e.what(), hint_for(e.code(), kHintKernel)));
        }
    }

    void custom(std::string name, std::initializer_list<std::pair<const Fd*, const char*>> needs,
                const std::function<Feature(std::string)>& probe)
    {
        if (skipped(name, needs))
            return;
        out_.push_back(probe(std::move(name)));
    }

private:
    bool skipped(const std::string& name, std::initializer_list<std::pair<const Fd*, const char*>> needs)
    {
        if (blocked_) {
            out_.push_back(not_probed(name, *blocked_));
            return true;
        }
        for (const auto& [fd, what] : needs)
            if (!*fd) {
                out_.push_back(not_probed(name, what));
                return true;
            }
        return false;
    }

    std::vector<Feature>& out_;
    std::optional<std::string> blocked_;
};

const char* type_name(uint32_t type)
{
    return type == BPF_PROG_TYPE_SOCK_OPS ? "sock_ops" : "sk_msg";
}

void probe_bpf_features(std::vector<Feature>& out, const std::optional<std::string>& blocked)
{
    Prober p(out, blocked);
    Fd sockops, msg, array, sockhash, storage, btf;
    const std::pair<const Fd*, const char*> need_sockops{&sockops, "program type sock_ops"};
    const std::pair<const Fd*, const char*> need_msg{&msg, "program type sk_msg"};
    const std::pair<const Fd*, const char*> need_array{&array, "map type array"};
    const std::pair<const Fd*, const char*> need_sockhash{&sockhash, "map type sockhash"};
    const std::pair<const Fd*, const char*> need_storage{&storage, "map type sk_storage"};
    auto need_type = [&](uint32_t type) { return type == BPF_PROG_TYPE_SOCK_OPS ? need_sockops : need_msg; };

    const auto trivial = [] {
        Insns i;
        finish(i);
        return i;
    };
    p.program("program type sock_ops", BPF_PROG_TYPE_SOCK_OPS, trivial, {}, &sockops);
    p.program("program type sk_msg", BPF_PROG_TYPE_SK_MSG, trivial, {}, &msg);

    auto small_map = [](uint32_t type) {
        sys::MapCreateArgs a;
        a.type = type;
        a.key_size = 4;
        a.value_size = 8; // a sockhash value is 4 or 8 bytes; 8 like ours
        a.max_entries = 1;
        a.name = "sr_probe";
        return a;
    };
    p.map(
        "map type array", [&] { return small_map(BPF_MAP_TYPE_ARRAY); }, array);
    p.map(
        "map type sockhash", [&] { return small_map(BPF_MAP_TYPE_SOCKHASH); }, sockhash);
    // Socket storage needs BTF for its key and value, as the loader gives it (loader/btf.cpp).
    p.map(
        "map type sk_storage",
        [&] {
            const auto blob = minimal_btf();
            btf = sys::btf_load(blob);
            sys::MapCreateArgs s;
            s.type = BPF_MAP_TYPE_SK_STORAGE;
            s.key_size = 4;
            s.value_size = 4;
            s.flags = BPF_F_NO_PREALLOC;
            s.name = "sr_probe";
            s.btf_fd = btf.get();
            s.btf_key_type_id = kBtfIntTypeId;
            s.btf_value_type_id = kBtfIntTypeId;
            return s;
        },
        storage);

    // Each helper the programs call, in each program type that calls it: one tiny program per pair.
    auto helper_name = [](const char* helper, uint32_t type) {
        return std::string("helper ") + helper + " in " + type_name(type);
    };
    for (uint32_t type : {BPF_PROG_TYPE_SOCK_OPS, BPF_PROG_TYPE_SK_MSG})
        p.program(helper_name("bpf_map_lookup_elem", type), type,
                  [&] {
                      // bpf_map_lookup_elem(&array, &key)
                      Insns i;
                      zero_key(i, BPF_REG_2);
                      ld_map(i, BPF_REG_1, array.get());
                      call(i, BPF_FUNC_map_lookup_elem);
                      finish(i);
                      return i;
                  },
                  {need_type(type), need_array});
    // bpf_sock_hash_update(skops, &sockhash, &key, BPF_ANY) and bpf_msg_redirect_hash(msg, &sockhash, &key,
    // BPF_F_INGRESS) take the same arguments: the context, the sockhash, a key and flags.
    const auto sockhash_call = [&](int32_t helper, int32_t flags) {
        return [&sockhash, helper, flags] {
            Insns i;
            mov_reg(i, BPF_REG_6, BPF_REG_1);
            zero_key(i, BPF_REG_3);
            ld_map(i, BPF_REG_2, sockhash.get());
            mov_reg(i, BPF_REG_1, BPF_REG_6);
            mov_imm(i, BPF_REG_4, flags);
            call(i, helper);
            finish(i);
            return i;
        };
    };
    p.program(helper_name("bpf_sock_hash_update", BPF_PROG_TYPE_SOCK_OPS), BPF_PROG_TYPE_SOCK_OPS,
              sockhash_call(BPF_FUNC_sock_hash_update, BPF_ANY), {need_sockops, need_sockhash});
    p.program(helper_name("bpf_msg_redirect_hash", BPF_PROG_TYPE_SK_MSG), BPF_PROG_TYPE_SK_MSG,
              sockhash_call(BPF_FUNC_msg_redirect_hash, BPF_F_INGRESS), {need_msg, need_sockhash});
    for (uint32_t type : {BPF_PROG_TYPE_SOCK_OPS, BPF_PROG_TYPE_SK_MSG})
        p.program(helper_name("bpf_get_netns_cookie", type), type,
                  [] {
                      // bpf_get_netns_cookie(ctx): r1 is the context on entry.
                      Insns i;
                      call(i, BPF_FUNC_get_netns_cookie);
                      finish(i);
                      return i;
                  },
                  {need_type(type)});
    for (uint32_t type : {BPF_PROG_TYPE_SOCK_OPS, BPF_PROG_TYPE_SK_MSG})
        p.program(helper_name("bpf_sk_storage_get", type), type,
                  [&, type] {
                      // bpf_sk_storage_get(&storage, ctx->sk, NULL, flags), as the programs call it: sock_ops
                      // creates the storage and its sk may be NULL; sk_msg only looks and its sk is never NULL.
                      Insns i;
                      const bool sock_ops = type == BPF_PROG_TYPE_SOCK_OPS;
                      load_dword(i, BPF_REG_2, BPF_REG_1,
                                 sock_ops ? offsetof(bpf_sock_ops, sk) : offsetof(sk_msg_md, sk));
                      Insns body;
                      ld_map(body, BPF_REG_1, storage.get());
                      mov_imm(body, BPF_REG_3, 0);
                      mov_imm(body, BPF_REG_4, sock_ops ? BPF_SK_STORAGE_GET_F_CREATE : 0);
                      call(body, BPF_FUNC_sk_storage_get);
                      if (sock_ops)
                          jump_if_zero(i, BPF_REG_2, static_cast<int16_t>(body.size()));
                      i.insert(i.end(), body.begin(), body.end());
                      finish(i);
                      return i;
                  },
                  {need_type(type), need_storage});

    // BPF_LINK_CREATE for a cgroup attach type, aimed at a descriptor that is no cgroup: a kernel that knows
    // cgroup links gets as far as looking the cgroup up and says EBADF; one that does not says EINVAL.
    p.custom("cgroup BPF links (BPF_LINK_CREATE)", {need_sockops}, [&](std::string name) {
        try {
            Fd link = sys::link_create(sockops.get(), -1, BPF_CGROUP_SOCK_OPS);
            return ok(std::move(name)); // not expected: -1 is no cgroup
        } catch (const Error& e) {
            if (e.code() == EBADF)
                return ok(std::move(name));
            return missing(std::move(name), "BPF_LINK_CREATE: " + errno_text(e.code()),
                           hint_for(e.code(), "Linux 5.7+ with CONFIG_CGROUP_BPF"));
        }
    });
}

} // namespace

std::string verifier_reason(std::string_view log)
{
    std::string reason;
    size_t start = 0;
    while (start < log.size()) {
        size_t end = log.find('\n', start);
        if (end == std::string_view::npos)
            end = log.size();
        auto line = log.substr(start, end - start);
        start = end + 1;
        while (!line.empty() && line.back() == ' ')
            line.remove_suffix(1);
        if (line.empty())
            continue;
        bool statistics = false;
        for (const char* prefix : {"processed ", "verification time", "stack depth", "max_states_per_insn"})
            statistics = statistics || line.rfind(prefix, 0) == 0;
        if (!statistics)
            reason = line;
    }
    return reason;
}

bool has_filesystem(std::string_view proc_filesystems, std::string_view name)
{
    size_t start = 0;
    while (start < proc_filesystems.size()) {
        size_t end = proc_filesystems.find('\n', start);
        if (end == std::string_view::npos)
            end = proc_filesystems.size();
        auto line = proc_filesystems.substr(start, end - start);
        start = end + 1;
        // "nodev\tcgroup2" or "\text4": the name is the last tab-separated field.
        const auto tab = line.rfind('\t');
        if (tab != std::string_view::npos)
            line = line.substr(tab + 1);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r'))
            line.remove_suffix(1);
        if (line == name)
            return true;
    }
    return false;
}

ProbeReport probe_kernel()
{
    ProbeReport report;
    utsname u{};
    if (::uname(&u) == 0)
        report.kernel = std::string(u.sysname) + " " + u.release;

    auto& f = report.features;
    const std::string bpf_name = "bpf(2) system call";
    const std::string priv_name = "privileges";
    // Any bpf(2) call tells whether the system call exists; an array map is the most basic one.
    int bpf_err = 0;
    try {
        sys::MapCreateArgs a;
        a.type = BPF_MAP_TYPE_ARRAY;
        a.key_size = 4;
        a.value_size = 4;
        a.max_entries = 1;
        a.name = "sr_probe";
        sys::map_create(a);
    } catch (const Error& e) {
        bpf_err = e.code();
    }
    bool go_on = true;
    if (bpf_err == ENOSYS) {
        f.push_back(missing(bpf_name, "bpf: " + errno_text(bpf_err), kHintBpf));
        f.push_back(not_probed(priv_name, "the bpf(2) system call"));
        go_on = false;
    } else {
        f.push_back(ok(bpf_name));
        if (const auto lacking = missing_capabilities()) {
            f.push_back(missing(priv_name, *lacking, kHintPrivileges));
            go_on = false;
        } else if (bpf_err == EPERM || bpf_err == EACCES) {
            f.push_back(missing(priv_name,
                                "bpf(2) refused: " + errno_text(bpf_err) + " (a user namespace, lockdown or an LSM?)",
                                kHintPrivileges));
            go_on = false;
        } else {
            f.push_back(ok(priv_name, ::geteuid() == 0 ? "root" : "capabilities present"));
        }
    }

    std::optional<std::string> blocked;
    if (!go_on)
        blocked = bpf_err == ENOSYS ? "the bpf(2) system call" : "privileges";
    probe_bpf_features(f, blocked);
    f.push_back(cgroup2_feature());
    f.push_back(bpffs_feature());
    return report;
}

bool can_run(const ProbeReport& report)
{
    if (report.features.empty())
        return false;
    for (const auto& f : report.features)
        if (f.state != FeatureState::Ok)
            return false;
    return true;
}

std::string verdict(const ProbeReport& report)
{
    if (can_run(report))
        return "sockredir can run here";
    std::string names, hints;
    std::vector<std::string> seen;
    for (const auto& f : report.features) {
        if (f.state != FeatureState::Missing)
            continue;
        names += (names.empty() ? "" : ", ") + f.name;
        bool dup = f.hint.empty();
        for (const auto& h : seen)
            dup = dup || h == f.hint;
        if (!dup) {
            seen.push_back(f.hint);
            hints += (hints.empty() ? "" : "; ") + f.hint;
        }
    }
    if (names.empty())
        return "sockredir cannot run here: no feature could be probed";
    return "sockredir cannot run here: missing " + names + (hints.empty() ? "" : " (" + hints + ")");
}

std::string format_report(const ProbeReport& report)
{
    std::string out;
    if (!report.kernel.empty())
        out += "kernel: " + report.kernel + "\n";
    for (const auto& f : report.features) {
        const char* state = f.state == FeatureState::Ok ? "ok" : f.state == FeatureState::Missing ? "MISSING" : "-";
        std::string line = f.name;
        line.resize(std::max<size_t>(line.size() + 1, 44), ' ');
        line += state;
        if (f.state == FeatureState::NotProbed)
            line += " not probed: " + f.detail;
        else if (!f.detail.empty())
            line += ": " + f.detail;
        out += line + "\n";
    }
    out += "verdict: " + verdict(report) + "\n";
    return out;
}

} // namespace sockredir::app
