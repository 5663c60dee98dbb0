// Unit tests of loader/mounts' find_cgroup2_mount on sample /proc/self/mountinfo texts.
#include <doctest/doctest.h>

#include <string>

#include "loader/ebpf/mounts.hpp"

using namespace sockredir::ebpf;

namespace {

// A cgroup2-only system (systemd's "unified" mode), as on current distributions.
constexpr const char* kUnified =
    "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
    "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
    "24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
    "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
    "31 24 0:27 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:5 - bpf bpf rw,mode=700\n";

// systemd's "hybrid" mode: v1 controllers on /sys/fs/cgroup/*, cgroup2 on /sys/fs/cgroup/unified.
constexpr const char* kHybrid =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
    "25 24 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755\n"
    "26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n"
    "27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,"
    "name=systemd\n"
    "28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,cpu,"
    "cpuacct\n";

// Only cgroup v1 ("legacy" mode).
constexpr const char* kLegacy =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "25 24 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755\n"
    "27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,name=systemd\n"
    "28 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,memory\n";

} // namespace

TEST_CASE("a cgroup2-only system yields /sys/fs/cgroup")
{
    const auto found = find_cgroup2_mount(kUnified);
    REQUIRE(found.has_value());
    CHECK(*found == "/sys/fs/cgroup");
}

TEST_CASE("a hybrid system yields the cgroup2 mount at /sys/fs/cgroup/unified, not a v1 hierarchy")
{
    const auto found = find_cgroup2_mount(kHybrid);
    REQUIRE(found.has_value());
    CHECK(*found == "/sys/fs/cgroup/unified");
}

TEST_CASE("a system without cgroup2 yields nothing")
{
    CHECK_FALSE(find_cgroup2_mount(kLegacy).has_value());
    CHECK_FALSE(find_cgroup2_mount("").has_value());
    CHECK_FALSE(find_cgroup2_mount("\n\n").has_value());
}

TEST_CASE("octal escapes in the mount point are decoded")
{
    const auto found =
        find_cgroup2_mount("40 22 0:40 / /mnt/my\\040cgroup\\011tab\\134back rw,relatime shared:9 - cgroup2 none rw\n");
    REQUIRE(found.has_value());
    CHECK(*found == "/mnt/my cgroup\ttab\\back");
}

TEST_CASE("a cgroup2 bind mount whose root is not / is skipped")
{
    // A container's view: its own cgroup bind-mounted first, the real root later.
    const std::string text =
        "50 22 0:26 /system.slice/app.service /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n"
        "51 22 0:26 / /mnt/cgroup-root rw,nosuid shared:5 - cgroup2 cgroup2 rw\n";
    const auto found = find_cgroup2_mount(text);
    REQUIRE(found.has_value());
    CHECK(*found == "/mnt/cgroup-root");
    // With only the bind mount there is no usable cgroup2 root.
    CHECK_FALSE(find_cgroup2_mount(text.substr(0, text.find('\n') + 1)).has_value());
}

TEST_CASE("the first cgroup2 mount at its root wins")
{
    const auto found = find_cgroup2_mount("30 24 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n"
                                          "60 22 0:26 / /other rw shared:8 - cgroup2 cgroup2 rw\n");
    REQUIRE(found.has_value());
    CHECK(*found == "/sys/fs/cgroup");
}

TEST_CASE("the filesystem type is read after the separator, with any number of optional fields")
{
    // No optional fields, and several; a mount point or source named like the type must not confuse it.
    CHECK(find_cgroup2_mount("30 24 0:26 / /a rw - cgroup2 cgroup2 rw\n").value_or("") == "/a");
    CHECK(find_cgroup2_mount("30 24 0:26 / /b rw shared:4 master:2 unbindable - cgroup2 x rw").value_or("") == "/b");
    CHECK_FALSE(find_cgroup2_mount("30 24 0:26 / /cgroup2 rw - tmpfs cgroup2 rw\n").has_value());
    CHECK_FALSE(find_cgroup2_mount("30 24 0:26 / /c rw shared:4 - cgroup cgroup2 rw\n").has_value());
}

TEST_CASE("truncated and malformed lines are skipped without harm")
{
    const std::string text = "garbage\n"
                             "1 2 3\n"
                             "30 24 0:26 / /x rw -\n"
                             "30 24 0:26 / /y rw - \n"
                             "- cgroup2 cgroup2\n"
                             "31 24 0:27 / /sys/fs/cgroup rw shared:1 - cgroup2 cgroup2 rw";
    const auto found = find_cgroup2_mount(text);
    REQUIRE(found.has_value());
    CHECK(*found == "/sys/fs/cgroup");
}
