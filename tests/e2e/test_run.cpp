// `sockredir-min run` on the real kernel: attached while it runs, redirecting, detached and clean after SIGTERM/SIGINT.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "bpf/sockredir_shared.h"
#include "harness.hpp"
#include "loader/app/selftest.hpp"
#include "loader/app/status.hpp"
#include "loader/base/file.hpp"

using namespace e2e;

namespace {

std::string read_or_empty(const std::string& path)
{
    try {
        return sockredir::base::read_file_text(path);
    } catch (const std::exception&) {
        return {};
    }
}

// `sockredir-min run ARGS` in the background, its stdout and stderr in files; SIGKILLed and reaped if still there.
class Background {
public:
    explicit Background(const std::vector<std::string>& args)
    {
        char tmpl[] = "/tmp/sockredir-e2e-run-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        const std::string bin = bin_path();
        std::vector<std::string> argv_s{bin};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_s)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        // Opened before the fork: the files exist as soon as the constructor returns.
        const int o = ::open((dir_ + "/out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        const int e = ::open((dir_ + "/err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(o >= 0);
        REQUIRE(e >= 0);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            if (::dup2(o, 1) < 0 || ::dup2(e, 2) < 0)
                ::_exit(126);
            // A test runner may have blocked or ignored signals; run starts from the defaults like a service would.
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            ::signal(SIGTERM, SIG_DFL);
            ::signal(SIGINT, SIG_DFL);
            ::execv(bin.c_str(), argv.data());
            ::_exit(127);
        }
        ::close(o);
        ::close(e);
    }
    ~Background()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        ::unlink((dir_ + "/out").c_str());
        ::unlink((dir_ + "/err").c_str());
        ::rmdir(dir_.c_str());
    }
    Background(const Background&) = delete;
    Background& operator=(const Background&) = delete;

    pid_t pid() const { return pid_; }
    // Never throws: these also build failure messages, where an exception would end the whole run.
    std::string out() const { return read_or_empty(dir_ + "/out"); }
    std::string err() const { return read_or_empty(dir_ + "/err"); }

    // Waits until the process prints `text` on stdout; false after timeout_ms or when it exits first.
    bool wait_for_output(const std::string& text, int timeout_ms = 30000)
    {
        for (int waited = 0; waited < timeout_ms; waited += 20) {
            if (out().find(text) != std::string::npos)
                return true;
            if (exited())
                return out().find(text) != std::string::npos;
            sleep_ms(20);
        }
        return false;
    }

    // The exit code after it ends (-signal when killed); throws after timeout_ms.
    int wait(int timeout_ms = 30000)
    {
        for (int waited = 0; waited < timeout_ms; waited += 20) {
            if (exited())
                return WIFEXITED(status_) ? WEXITSTATUS(status_) : -WTERMSIG(status_);
            sleep_ms(20);
        }
        FAIL("sockredir-min run did not exit within " << timeout_ms << " ms");
        return -1000;
    }

private:
    bool exited()
    {
        if (pid_ <= 0)
            return true;
        if (::waitpid(pid_, &status_, WNOHANG) == pid_) {
            pid_ = -1;
            return true;
        }
        return false;
    }

    std::string dir_;
    pid_t pid_ = -1;
    int status_ = 0;
};

std::vector<std::string> run_args(const Sandbox& sb)
{
    return {"run", "--cgroup", sb.cgroup.path(), "--pin-dir", sb.pin_dir()};
}

void check_nothing_left(const Sandbox& sb, const ObjectIds& before)
{
    CHECK_FALSE(exists(sb.pin_dir()));
    // Nothing of ours; a bpffs may come with the kernel's own maps.debug and progs.debug.
    for (const auto& name : list_dir(sb.bpffs.root()))
        CHECK_MESSAGE(name.rfind("sockredir", 0) != 0, name);
    CHECK(sockops_attached(sb.cgroup.path()).empty());
    const auto left = leftover_ours(before);
    CHECK_MESSAGE(left.progs.empty(), describe(left));
    CHECK_MESSAGE(left.maps.empty(), describe(left));
}

} // namespace

TEST_CASE("run stays attached and redirecting until SIGTERM or SIGINT, then detaches, exits 0 and leaves nothing")
{
    E2E_REQUIRE_KERNEL();
    for (int sig : {SIGTERM, SIGINT}) {
        CAPTURE(sig);
        Sandbox sb;
        const auto before = snapshot_ids();
        Background run(run_args(sb));
        REQUIRE_MESSAGE(run.wait_for_output("running until SIGTERM or SIGINT"),
                        "stdout [" << run.out() << "] stderr [" << run.err() << "]");
        CHECK(run.out().find("attached to " + sb.cgroup.path()) == 0);
        const auto status = sockredir::app::read_status(sb.pin_dir());
        CHECK(status.attached);
        CHECK(sockops_attached(sb.cgroup.path()).size() == 1);

        // It does redirect meanwhile: the data skips TCP segments and arrives intact.
        TransferSpec spec;
        spec.family = AF_INET;
        spec.server_addr = spec.connect_addr = "127.0.0.1";
        spec.bytes = 4ULL << 20;
        const auto report = transfer_in_netns(sb.cgroup.path(), spec);
        CHECK_MESSAGE(report.ok, report.error);
        CHECK(report.received == spec.bytes);
        CHECK(report.segs_out < 64);

        // Still running: it waits for a signal, not for time.
        sleep_ms(200);
        CHECK(sockredir::app::read_status(sb.pin_dir()).attached);

        REQUIRE(::kill(run.pid(), sig) == 0);
        CHECK(run.wait() == 0);
        INFO("stdout [" << run.out() << "] stderr [" << run.err() << "]");
        // On stderr, as attach says it: one warning per defect its self-test found, recorded for status.
        CHECK((status.defects & (SOCKREDIR_DEFECT_BLOCKING_READ_EAGAIN << SOCKREDIR_DEFECT_PROBED_SHIFT)) != 0);
        CHECK(run.err() == sockredir::app::defect_warnings(status.defects, !status.observer.empty()));
        CHECK(run.out().find(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + "; detaching") !=
              std::string::npos);
        CHECK(run.out().find("detached (removed " + sb.pin_dir() + ")") != std::string::npos);
        check_nothing_left(sb, before);
    }
}

TEST_CASE("run adopts an attachment it finds on the same cgroup and detaches it when it stops")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto before = snapshot_ids();
    const auto a = sb.attach();
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    const auto link_id = sockredir::app::read_status(sb.pin_dir()).link_id;

    Background run(run_args(sb));
    REQUIRE_MESSAGE(run.wait_for_output("running until"), "stderr [" << run.err() << "]");
    CHECK(run.out().find("already attached to " + sb.cgroup.path()) == 0);
    CHECK(run.out().find("adopting it") != std::string::npos);
    CHECK(sockredir::app::read_status(sb.pin_dir()).link_id == link_id); // the same attachment, not a new one

    REQUIRE(::kill(run.pid(), SIGTERM) == 0);
    CHECK(run.wait() == 0);
    check_nothing_left(sb, before);
}

TEST_CASE("a second run on the same pin dir is refused with exit 1 and the first keeps running")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto before = snapshot_ids();
    Background first(run_args(sb));
    REQUIRE_MESSAGE(first.wait_for_output("running until"), "stderr [" << first.err() << "]");
    const auto link_id = sockredir::app::read_status(sb.pin_dir()).link_id;

    const auto second = run_bin(run_args(sb));
    INFO("second: stdout [" << second.out << "] stderr [" << second.err << "]");
    CHECK(second.exit_code == 1);
    CHECK(line_count(second.err) == 1);
    CHECK(second.err.find("another sockredir-min run owns the attachment") != std::string::npos);
    const auto status = sockredir::app::read_status(sb.pin_dir());
    CHECK(status.attached);
    CHECK(status.link_id == link_id);

    REQUIRE(::kill(first.pid(), SIGTERM) == 0);
    CHECK(first.wait() == 0);
    check_nothing_left(sb, before);
}

TEST_CASE("run leaves alone an attachment that replaced its own while it ran")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    Background run(run_args(sb));
    REQUIRE_MESSAGE(run.wait_for_output("running until"), "stderr [" << run.err() << "]");
    // An operator detaches and attaches again behind run's back.
    REQUIRE(sb.detach().exit_code == 0);
    const auto a = sb.attach();
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    const auto link_id = sockredir::app::read_status(sb.pin_dir()).link_id;

    REQUIRE(::kill(run.pid(), SIGTERM) == 0);
    CHECK(run.wait() == 0);
    CHECK(run.out().find("now hold another attachment") != std::string::npos);
    const auto status = sockredir::app::read_status(sb.pin_dir());
    CHECK(status.attached);
    CHECK(status.link_id == link_id);
}

TEST_CASE("run that cannot attach exits 1 at once with one line")
{
    E2E_REQUIRE_KERNEL();
    Sandbox sb;
    const auto r = run_bin({"run", "--cgroup", sb.cgroup.path() + "/does-not-exist", "--pin-dir", sb.pin_dir()});
    CHECK(r.exit_code == 1);
    CHECK(line_count(r.err) == 1);
    CHECK_FALSE(exists(sb.pin_dir()));
}
