// Kernel refusals reach the user as one clear line and leave nothing behind: memory, privileges.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "harness.hpp"
#include "loader/app/contract.hpp"

using namespace e2e;

namespace {

bool is_dir(const std::string& path)
{
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// A memory cgroup of our own with a hard limit: cgroup v1's memory controller where it
// is mounted (hybrid hierarchies, like Debian's default before systemd 252), else none.
class MemoryCgroup {
public:
    explicit MemoryCgroup(long limit_bytes)
    {
        const std::string v1 = "/sys/fs/cgroup/memory";
        if (::access((v1 + "/memory.limit_in_bytes").c_str(), F_OK) != 0)
            return;
        path_ = v1 + "/sockredir-test-mem-" + std::to_string(::getpid());
        if (::mkdir(path_.c_str(), 0755) != 0) {
            path_.clear();
            return;
        }
        FILE* f = std::fopen((path_ + "/memory.limit_in_bytes").c_str(), "w");
        if (f == nullptr || std::fprintf(f, "%ld", limit_bytes) < 0 || std::fclose(f) != 0) {
            ::rmdir(path_.c_str());
            path_.clear();
        }
    }
    ~MemoryCgroup()
    {
        if (!path_.empty())
            ::rmdir(path_.c_str()); // the child that joined it has exited
    }
    MemoryCgroup(const MemoryCgroup&) = delete;
    MemoryCgroup& operator=(const MemoryCgroup&) = delete;
    bool available() const { return !path_.empty(); }
    std::string procs() const { return path_ + "/cgroup.procs"; }

private:
    std::string path_;
};

} // namespace

TEST_CASE("a map the kernel cannot allocate fails with one line that says what to do, and leaves nothing")
{
    E2E_REQUIRE_KERNEL();
    MemoryCgroup mem(16L << 20);
    if (!mem.available())
        SKIP_TEST_CASE("no cgroup v1 memory controller to provoke ENOMEM with");
    Sandbox sb;
    const auto before = snapshot_ids();
    RunOptions in_mem;
    in_mem.join_procs = mem.procs();
    // 16 Mi sockhash buckets need far more than 16 MiB; map memory is charged to the creator's memcg.
    auto args = sb.attach_args();
    args.push_back("--max-sockets");
    args.push_back(std::to_string(sockredir::app::kMaxSockets));
    const auto r = run_bin(args, in_mem);
    INFO("stdout [" << r.out << "] stderr [" << r.err << "]");
    CHECK(r.exit_code == 1);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("Cannot allocate memory") != std::string::npos);
    CHECK(r.err.find("lower --max-sockets") != std::string::npos);
    CHECK_FALSE(is_dir(sb.pin_dir()));
    const auto left = leftover_ours(before);
    CHECK(left.progs.empty());
    CHECK(left.maps.empty());

    // The same attach with room to spare works: the refusal was about memory only.
    const auto ok = sb.attach();
    CHECK_MESSAGE(ok.exit_code == 0, ok.err);
}
