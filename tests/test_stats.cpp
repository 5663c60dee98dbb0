// Unit tests of loader/app/stats: the sample's text and JSON, and the sampling itself against a fake kernel (no root).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "bpf/sockredir_shared.h"
#include "loader/app/pins.hpp"
#include "loader/app/stats.hpp"
#include "loader/base/error.hpp"
#include "loader/ebpf/sys.hpp"

using namespace sockredir;
using namespace sockredir::app;

namespace {

RunStatsSample sample(uint64_t sockops_runs, uint64_t sockops_ns, uint64_t msg_runs, uint64_t msg_ns)
{
    RunStatsSample s;
    s.pin_dir = "/sys/fs/bpf/sockredir";
    s.window_s = 5;
    s.sock_ops = {sockops_runs, sockops_ns};
    s.sk_msg = {msg_runs, msg_ns};
    return s;
}

// --- a fake kernel behind the sys seam: two pinned programs whose counters grow with every read ---------------------

struct FakeKernel {
    int sockops_fd = -1;
    int msg_fd = -1;
    int stats_fd = -1;
    uint32_t stats_type = 99;
    int enable_calls = 0;
    int reads = 0;
    int reads_with_stats_off = 0;
};
FakeKernel fake;

bool fd_open(int fd)
{
    return fd >= 0 && ::fcntl(fd, F_GETFD) != -1;
}

long fake_bpf(int cmd, bpf_attr& attr)
{
    switch (cmd) {
    case BPF_OBJ_GET: {
        const std::string path = reinterpret_cast<const char*>(static_cast<uintptr_t>(attr.pathname));
        const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (path.ends_with(std::string("/") + SOCKREDIR_PROG_SOCKOPS))
            fake.sockops_fd = fd;
        else if (path.ends_with(std::string("/") + SOCKREDIR_PROG_MSG))
            fake.msg_fd = fd;
        return fd;
    }
    case BPF_ENABLE_STATS:
        ++fake.enable_calls;
        fake.stats_type = attr.enable_stats.type;
        fake.stats_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        return fake.stats_fd;
    case BPF_OBJ_GET_INFO_BY_FD: {
        const int fd = static_cast<int>(attr.info.bpf_fd);
        if (fd != fake.sockops_fd && fd != fake.msg_fd) {
            errno = EBADF;
            return -1;
        }
        ++fake.reads;
        if (!fd_open(fake.stats_fd))
            ++fake.reads_with_stats_off;
        // Before the window: sock_ops 100 runs, sk_msg 1000; in it sock_ops runs 4 times at 250 ns, sk_msg 600
        // times at 300 ns.
        const bool second = fake.reads > 2;
        bpf_prog_info info{};
        if (fd == fake.sockops_fd) {
            info.run_cnt = second ? 104 : 100;
            info.run_time_ns = second ? 50000 + 1000 : 50000;
        } else {
            info.run_cnt = second ? 1600 : 1000;
            info.run_time_ns = second ? 900000 + 180000 : 900000;
        }
        std::memcpy(reinterpret_cast<void*>(static_cast<uintptr_t>(attr.info.info)), &info,
                    std::min<size_t>(sizeof info, attr.info.info_len));
        return 0;
    }
    default:
        errno = ENOSYS;
        return -1;
    }
}

// The fake kernel for one test case, the real one again afterwards.
struct FakeKernelScope {
    FakeKernelScope()
    {
        fake = FakeKernel{};
        ebpf::sys::override_bpf(fake_bpf);
    }
    ~FakeKernelScope() { ebpf::sys::override_bpf(nullptr); }
    FakeKernelScope(const FakeKernelScope&) = delete;
    FakeKernelScope& operator=(const FakeKernelScope&) = delete;
};

// A pin dir made of plain files: pin_exists looks only at the names, the fake kernel answers the rest.
struct FakePinDir {
    std::string path;
    FakePinDir()
    {
        char tmpl[] = "/tmp/sockredir-test-stats.XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    void add(const std::string& name) const { std::ofstream(path + "/" + name).put('\n'); }
    ~FakePinDir()
    {
        for (const char* name : {kPinLink, SOCKREDIR_PROG_SOCKOPS, SOCKREDIR_PROG_MSG})
            ::unlink((path + "/" + name).c_str());
        ::rmdir(path.c_str());
    }
    FakePinDir(const FakePinDir&) = delete;
    FakePinDir& operator=(const FakePinDir&) = delete;
};

} // namespace

TEST_CASE("the sample's JSON is one line with the window and each program's runs, time and cost per run")
{
    CHECK(format_sample_json(sample(4, 1000, 600, 180000)) ==
          "{\"window_s\":5,\"programs\":"
          "{\"sock_ops\":{\"runs\":4,\"run_time_ns\":1000,\"ns_per_run\":250.0},"
          "\"sk_msg\":{\"runs\":600,\"run_time_ns\":180000,\"ns_per_run\":300.0}}}\n");
}

TEST_CASE("a program that did not run in the window has a null cost per run in the JSON")
{
    const auto json = format_sample_json(sample(3, 900, 0, 0));
    CHECK(json.find("\"sk_msg\":{\"runs\":0,\"run_time_ns\":0,\"ns_per_run\":null}") != std::string::npos);
    CHECK(json.find("\"ns_per_run\":300.0") != std::string::npos);
}

TEST_CASE("the sample's JSON keeps 64-bit counters exact")
{
    const auto json = format_sample_json(sample(18446744073709551615ull, 18446744073709551614ull, 1, 7));
    CHECK(json.find("\"runs\":18446744073709551615,\"run_time_ns\":18446744073709551614") != std::string::npos);
    CHECK(json.find("\"sk_msg\":{\"runs\":1,\"run_time_ns\":7,\"ns_per_run\":7.0}") != std::string::npos);
}

TEST_CASE("the sample's text names the window, the pin dir and each program on a line of its own")
{
    CHECK(format_sample_text(sample(4, 1000, 600, 180000)) ==
          "run statistics over 5 s (pins in /sys/fs/bpf/sockredir)\n"
          "  sock_ops  4 runs, 1000 ns, 250 ns per run\n"
          "  sk_msg    600 runs, 180000 ns, 300 ns per run\n");
}

TEST_CASE("the sample's text says so when a program did not run")
{
    CHECK(format_sample_text(sample(0, 0, 0, 0)).find("  sk_msg    did not run\n") != std::string::npos);
}

TEST_CASE("the cost per run is the time over the runs, and 0 without runs")
{
    CHECK(ProgramRunStats{4, 1000}.ns_per_run() == doctest::Approx(250.0));
    CHECK(ProgramRunStats{0, 0}.ns_per_run() == 0.0);
}

TEST_CASE("a sample turns the run statistics on around both readings and returns the differences")
{
    const FakePinDir pins;
    for (const char* name : {kPinLink, SOCKREDIR_PROG_SOCKOPS, SOCKREDIR_PROG_MSG})
        pins.add(name);
    const FakeKernelScope kernel;

    const auto s = sample_run_stats(pins.path, 0);

    CHECK(fake.enable_calls == 1);
    CHECK(fake.stats_type == BPF_STATS_RUN_TIME);
    CHECK(fake.reads == 4);
    CHECK(fake.reads_with_stats_off == 0);
    CHECK_FALSE(fd_open(fake.stats_fd)); // off again once the sample is taken
    CHECK(s.pin_dir == pins.path);
    CHECK(s.window_s == 0);
    CHECK(s.sock_ops.runs == 4);
    CHECK(s.sock_ops.run_time_ns == 1000);
    CHECK(s.sk_msg.runs == 600);
    CHECK(s.sk_msg.run_time_ns == 180000);
}

TEST_CASE("a sample of a pin dir with nothing attached is refused before the statistics go on")
{
    const FakePinDir pins;
    const FakeKernelScope kernel;
    CHECK_THROWS_WITH_AS(sample_run_stats(pins.path, 0), ("not attached (no pins in " + pins.path + ")").c_str(),
                         base::Error);
    CHECK(fake.enable_calls == 0);
}
