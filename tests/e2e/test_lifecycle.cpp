// Lifecycle tests of sockredir-min against the kernel: attach, detach, pins, crash safety, bad input, fd hygiene.
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "bpf/sockredir_shared.h"
#include "harness.hpp"
#include "loader/app/attach.hpp"
#include "loader/app/contract.hpp"
#include "loader/app/embedded.hpp"
#include "loader/app/status.hpp"
#include "loader/base/file.hpp"
#include "loader/ebpf/collection.hpp"
#include "loader/ebpf/insn.hpp"
#include "loader/ebpf/sys.hpp"

using namespace e2e;
namespace sys = sockredir::ebpf::sys;

namespace {

// Staging dirs of an attach ("<pin dir name>-attaching-<pid>") in the bpffs root.
std::vector<std::string> staging_dirs(const Sandbox& sb)
{
    std::vector<std::string> found;
    for (const auto& name : list_dir(sb.bpffs.root()))
        if (name.rfind("sockredir-attaching-", 0) == 0)
            found.push_back(name);
    return found;
}

// Nothing of ours is left: no pins, no staging dir, nothing attached to the cgroup, no kernel object.
void check_clean(const Sandbox& sb, const ObjectIds& before)
{
    CHECK_FALSE(exists(sb.pin_dir()));
    CHECK(staging_dirs(sb).empty());
    CHECK(sockops_attached(sb.cgroup.path()).empty());
    const auto left = leftover_ours(before);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
}

int count_open_fds()
{
    int n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    REQUIRE(d != nullptr);
    while (dirent* e = ::readdir(d))
        n += e->d_name[0] != '.';
    ::closedir(d);
    return n;
}

// A private temporary directory, removed with its files.
struct TempDir {
    std::string path;
    TempDir()
    {
        char tmpl[] = "/tmp/sockredir-e2e-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir()
    {
        for (const auto& name : list_dir(path))
            ::unlink((path + "/" + name).c_str());
        ::rmdir(path.c_str());
    }
    std::string write(const std::string& name, const std::vector<std::byte>& bytes) const
    {
        const std::string file = path + "/" + name;
        const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
        ::close(fd);
        return file;
    }
};

// A tmpfs instance on a temporary directory: a directory that is certainly not cgroup2.
struct Tmpfs {
    TempDir dir;
    Tmpfs() { REQUIRE(::mount("tmpfs", dir.path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m") == 0); }
    ~Tmpfs() { ::umount2(dir.path.c_str(), MNT_DETACH); }
};

void check_ids_equal(const sockredir::app::Status& a, const sockredir::app::Status& b)
{
    CHECK(a.attached);
    CHECK(b.attached);
    CHECK(a.link_id == b.link_id);
    CHECK(a.sockops_id == b.sockops_id);
    CHECK(a.msg_id == b.msg_id);
    CHECK(a.sock_hash_id == b.sock_hash_id);
    CHECK(a.counters_id == b.counters_id);
    CHECK(a.cgroup_id == b.cgroup_id);
}

} // namespace

TEST_CASE("attach when already attached exits 0, says so and changes nothing")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto first = sb.attach();
    REQUIRE_MESSAGE(first.exit_code == 0, first.err);
    const auto before = sockredir::app::read_status(sb.pin_dir());
    const auto attached = sockops_attached(sb.cgroup.path());

    const auto second = sb.attach();
    CHECK(second.exit_code == 0);
    CHECK(second.err.empty());
    CHECK(second.out.find("already attached") != std::string::npos);
    check_ids_equal(before, sockredir::app::read_status(sb.pin_dir()));
    CHECK(sockops_attached(sb.cgroup.path()) == attached);
    CHECK(attached.size() == 1);
}

TEST_CASE("detach when nothing is attached exits 0 and says so")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto r = sb.detach();
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(r.out.find("not attached") != std::string::npos);
    CHECK_FALSE(exists(sb.pin_dir()));
}

TEST_CASE("after detach no program or map of sockredir is left in the kernel")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto before = snapshot_ids();
    const auto a = sb.attach();
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    const auto ours = pinned_ids(sb.pin_dir());
    CHECK(ours.progs.size() == 5); // sock_ops, sk_msg, the observer, the two option hooks
    CHECK(ours.maps.size() == 6);
    // Sanity: the leftover check does see our objects while they are alive.
    const auto alive = leftover_ours(before, 0);
    CHECK(alive.progs == ours.progs);
    CHECK(alive.maps == ours.maps);

    const auto d = sb.detach();
    REQUIRE_MESSAGE(d.exit_code == 0, d.err);
    CHECK(d.out.find("detached") != std::string::npos);
    check_clean(sb, before);
    const auto now = snapshot_ids();
    for (auto id : ours.progs)
        CHECK_MESSAGE(now.progs.count(id) == 0, "program id " << id << " still exists");
    for (auto id : ours.maps)
        CHECK_MESSAGE(now.maps.count(id) == 0, "map id " << id << " still exists");
}

TEST_CASE("another sock_ops program on the cgroup keeps running through attach and detach")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    // The smallest sock_ops program: r0 = 1; exit.
    namespace insn = sockredir::ebpf::insn;
    const bpf_insn insns[] = {insn::mov_imm(BPF_REG_0, 1), insn::exit_insn()};
    sys::ProgLoadArgs args;
    args.type = BPF_PROG_TYPE_SOCK_OPS;
    args.insns = insns;
    args.license = "GPL";
    args.name = "e2e_other";
    const auto other = sys::prog_load(args);
    const uint32_t other_id = sys::prog_info(other.get()).id;
    const sockredir::base::Fd cgroup(::open(sb.cgroup.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(cgroup.valid());
    sys::prog_attach(other.get(), cgroup.get(), BPF_CGROUP_SOCK_OPS, BPF_F_ALLOW_MULTI);
    struct Detacher {
        int prog, cg;
        ~Detacher()
        {
            try {
                sys::prog_detach(prog, cg, BPF_CGROUP_SOCK_OPS);
            } catch (...) {
            }
        }
    } detacher{other.get(), cgroup.get()};

    const auto a = sb.attach();
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    const auto ours = sockredir::app::read_status(sb.pin_dir()).sockops_id;
    auto attached = sockops_attached(sb.cgroup.path());
    std::sort(attached.begin(), attached.end());
    std::vector<uint32_t> expected{other_id, ours};
    std::sort(expected.begin(), expected.end());
    CHECK(attached == expected);

    const auto d = sb.detach();
    REQUIRE_MESSAGE(d.exit_code == 0, d.err);
    CHECK(sockops_attached(sb.cgroup.path()) == std::vector<uint32_t>{other_id});

    sys::prog_detach(other.get(), cgroup.get(), BPF_CGROUP_SOCK_OPS);
    detacher.prog = -1;
    CHECK(sockops_attached(sb.cgroup.path()).empty());
}

TEST_CASE("every bad command line fails with the documented exit code and a one-line reason")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const std::string pin = sb.pin_dir();
    const std::string cg = sb.cgroup.path();

    auto expect = [](const RunResult& r, int code, const char* what) {
        INFO(what << ": stdout [" << r.out << "] stderr [" << r.err << "]");
        CHECK(r.signal == 0);
        CHECK(r.exit_code == code);
        CHECK(line_count(r.err) == 1);
    };
    auto nothing_attached = [&] {
        CHECK_FALSE(exists(pin));
        CHECK(staging_dirs(sb).empty());
        CHECK(sockops_attached(cg).empty());
    };

    SUBCASE("usage errors exit 2")
    {
        expect(run_bin({"frobnicate", "--pin-dir", pin}), 2, "unknown command");
        expect(run_bin({"attach", "--cgroup", cg, "--pin-dir", pin, "--frobnicate"}), 2, "unknown option");
        expect(run_bin({"detach", "--frobnicate"}), 2, "unknown option of detach");
        expect(run_bin({"attach", "--cgroup", cg, "--pin-dir"}), 2, "missing option value");
        expect(run_bin({"status", "--pin-dir"}), 2, "missing option value of status");
        expect(run_bin({"attach", "--cgroup", cg, "--pin-dir", "relative/pins"}), 2, "relative --pin-dir");
        expect(run_bin({"detach", "--pin-dir", "relative/pins"}), 2, "relative --pin-dir of detach");
        nothing_attached();
    }

    SUBCASE("bad cgroups exit 1")
    {
        expect(run_bin({"attach", "--cgroup", cg + "/does-not-exist", "--pin-dir", pin}), 1, "missing cgroup");
        Tmpfs tmpfs;
        expect(run_bin({"attach", "--cgroup", tmpfs.dir.path, "--pin-dir", pin}), 1, "tmpfs cgroup");
        nothing_attached();
    }

    SUBCASE("bad objects exit 1 and leave nothing behind")
    {
        const auto before = snapshot_ids();
        TempDir dir;
        expect(run_bin({"attach", "--cgroup", cg, "--pin-dir", pin, "--object", dir.path + "/missing.o"}), 1,
               "missing object");
        std::vector<std::byte> garbage(4096);
        for (size_t i = 0; i < garbage.size(); ++i)
            garbage[i] = static_cast<std::byte>((i * 131 + 7) & 0xff);
        const auto garbage_file = dir.write("garbage.o", garbage);
        expect(run_bin({"attach", "--cgroup", cg, "--pin-dir", pin, "--object", garbage_file}), 1, "garbage object");
        auto real = sockredir::base::read_file_bytes(object_path());
        for (size_t keep : {real.size() / 2, real.size() - 1, size_t{64}}) {
            CAPTURE(keep);
            const auto truncated = dir.write("truncated.o", {real.begin(), real.begin() + static_cast<long>(keep)});
            expect(run_bin({"attach", "--cgroup", cg, "--pin-dir", pin, "--object", truncated}), 1, "truncated object");
        }
        nothing_attached();
        check_clean(sb, before);
    }

    SUBCASE("an object the verifier rejects exits 1, shows the verifier log, then the program's name")
    {
        const char* reject = std::getenv("SOCKREDIR_REJECT_OBJECT");
        REQUIRE_MESSAGE(reject != nullptr, "meson sets SOCKREDIR_REJECT_OBJECT");
        const auto before = snapshot_ids();
        const auto r = run_bin({"attach", "--cgroup", cg, "--pin-dir", pin, "--object", reject});
        INFO("stderr [" << r.err << "]");
        CHECK(r.exit_code == 1);
        CHECK(r.err.find("--- verifier log ---\n") != std::string::npos);
        // The verifier's own words for the defect planted in tests/data/verifier_reject.bpf.c.
        CHECK(r.err.find("invalid mem access 'map_value_or_null'") != std::string::npos);
        // The reason is the last line, one line, naming the program and its section.
        const auto last = r.err.substr(r.err.rfind('\n', r.err.size() - 2) + 1);
        CHECK(last.find("sockredir-min: the verifier rejected program 'sockredir_msg' (section 'sk_msg')") == 0);
        nothing_attached();
        check_clean(sb, before);
    }

    SUBCASE("no privileges exit 1")
    {
        RunOptions nobody;
        nobody.uid = 65534;
        expect(run_bin(sb.attach_args(), nobody), 1, "attach as nobody");
        nothing_attached();
    }

    SUBCASE("attach to another cgroup while attached exits 1 and changes nothing")
    {
        const auto a = sb.attach();
        REQUIRE_MESSAGE(a.exit_code == 0, a.err);
        const auto before = sockredir::app::read_status(sb.pin_dir());
        TestCgroup other;
        expect(run_bin({"attach", "--cgroup", other.path(), "--pin-dir", pin}), 1, "attach elsewhere");
        check_ids_equal(before, sockredir::app::read_status(sb.pin_dir()));
        CHECK(sockops_attached(other.path()).empty());
        CHECK(sockops_attached(cg).size() == 1);
    }
}

TEST_CASE("pins are readable by root only")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto a = sb.attach();
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    struct stat st {};
    REQUIRE(::stat(sb.pin_dir().c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0700);
    CHECK(st.st_uid == 0);
    const auto pins = list_dir(sb.pin_dir());
    // Six maps, sock_ops, sk_msg, the observer that loads here, the two option hooks, the sock_ops link, the
    // observer's link and the hooks' two links.
    CHECK(pins.size() == 15);
    for (const auto& name : pins) {
        CAPTURE(name);
        REQUIRE(::stat((sb.pin_dir() + "/" + name).c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0600);
        CHECK(st.st_uid == 0);
    }
}

TEST_CASE("an attach or detach killed at any step leaves nothing the next detach or attach cannot clean up")
{
    E2E_REQUIRE_KERNEL();
    // The steps named in loader/attach.hpp (and "plan", before any syscall), each with the command that reaches it.
    struct Step {
        const char* name;
        bool in_detach;
    };
    const Step steps[] = {{"plan", false},          {"maps", false},           {"programs", false}, {"pin", false},
                          {"attach_msg", false},    {"attach_sockops", false}, {"publish", false},  {"drain", true},
                          {"detach_sockops", true}, {"evict", true},           {"unpin", true}};
    for (const auto& step : steps) {
        for (const char* next : {"detach", "attach"}) {
            INFO("killed after step '" << std::string(step.name) << "' of "
                                       << std::string(step.in_detach ? "detach" : "attach") << ", then "
                                       << std::string(next));
            Sandbox sb;
            const auto before = snapshot_ids();
            RunOptions kill;
            kill.env.push_back(std::string("SOCKREDIR_TEST_KILL_AFTER=") + step.name);
            if (step.in_detach) {
                const auto a = sb.attach();
                REQUIRE_MESSAGE(a.exit_code == 0, a.err);
            }
            const auto killed = step.in_detach ? sb.detach(kill) : sb.attach(kill);
            CHECK(killed.signal == SIGKILL);

            if (std::string(next) == "detach") {
                const auto d = sb.detach();
                CHECK_MESSAGE(d.exit_code == 0, d.err);
                check_clean(sb, before);
            } else {
                const auto a = sb.attach();
                CHECK_MESSAGE(a.exit_code == 0, a.err);
                CHECK(staging_dirs(sb).empty());
                CHECK(sockops_attached(sb.cgroup.path()).size() == 1);
                const auto status = sockredir::app::read_status(sb.pin_dir());
                CHECK(status.attached);
                // An attach that takes over from an interrupted detach must redirect again.
                CHECK_FALSE(status.draining);
                const auto d = sb.detach();
                CHECK_MESSAGE(d.exit_code == 0, d.err);
                check_clean(sb, before);
            }
            // And the pair works again from there.
            const auto again = sb.attach();
            CHECK_MESSAGE(again.exit_code == 0, again.err);
            CHECK(again.out.find("already") == std::string::npos);
            CHECK(sockops_attached(sb.cgroup.path()).size() == 1);
            const auto d = sb.detach();
            CHECK_MESSAGE(d.exit_code == 0, d.err);
            check_clean(sb, before);
        }
    }
}

TEST_CASE("loading the embedded object and dropping the collection leaks no file descriptor")
{
    E2E_REQUIRE_KERNEL();
    const auto before_ids = snapshot_ids();
    const int before = count_open_fds();
    {
        // All of it, the eviction programs too, where this kernel loads them.
        const auto spec = sockredir::app::sockredir_spec(sockredir::app::embedded_object(), {});
        // What attach loads (the tp_btf observer loads here, fexit not: kernel-notes section 6), and what detach
        // loads where it can.
        sockredir::ebpf::LoadOptions options;
        options.optional = sockredir::app::optional_programs();
        options.optional.push_back(SOCKREDIR_PROG_OBSERVE_FEXIT);
        options.optional.push_back(SOCKREDIR_PROG_OBSERVE_MAP);
        const auto collection = sockredir::ebpf::load_collection(spec, options);
        CHECK(collection.programs.size() + collection.not_loaded.size() == 9);
        CHECK(collection.programs.contains(SOCKREDIR_PROG_OBSERVE_TP));
        CHECK(collection.programs.contains(SOCKREDIR_PROG_SETSOCKOPT));
        CHECK(collection.programs.contains(SOCKREDIR_PROG_GETSOCKOPT));
        CHECK(collection.maps.size() == 7);
        CHECK(count_open_fds() > before);
    }
    CHECK(count_open_fds() == before);
    const auto left = leftover_ours(before_ids);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
}
