// Unit tests of loader/app/pins: the pin dir's paths and the attach decision table, without a kernel.
#include <doctest/doctest.h>

#include "loader/app/pins.hpp"
#include "loader/base/error.hpp"

using namespace sockredir::app;
using sockredir::base::Error;

TEST_CASE("a pin dir is normalised and split into its bpffs parent and its name")
{
    const PinDir d("/sys/fs/bpf/test//");
    CHECK(d.path() == "/sys/fs/bpf/test");
    CHECK(d.parent() == "/sys/fs/bpf");
    CHECK(d.base() == "test");
    CHECK(d / "config" == "/sys/fs/bpf/test/config");
    // bpffs refuses dots in names: the staging dir is a sibling with a suffix.
    CHECK(d.staging(42) == "/sys/fs/bpf/test-attaching-42");
    CHECK(PinDir("").path() == kDefaultPinDir);
    CHECK(PinDir("/top").parent() == "/");
}

TEST_CASE("a relative or nameless pin dir is refused")
{
    CHECK_THROWS_WITH_AS(PinDir("relative/dir"), "pin dir relative/dir: must be an absolute path", Error);
    CHECK_THROWS_WITH_AS(PinDir("/sys/fs/bpf/.."), "pin dir /sys/fs/bpf/..: not a valid directory name", Error);
    CHECK_THROWS_WITH_AS(PinDir("/"), "pin dir /: not a valid directory name", Error);
}

TEST_CASE("the attach decision table: what attach does about what the pins say")
{
    constexpr uint64_t kOurs = 1234;
    Attachment none;
    CHECK(decide_attach(none, kOurs) == AttachDecision::Attach);

    Attachment live;
    live.dir = true;
    live.link = true;
    live.link_id = 7;
    live.cgroup_id = kOurs;
    CHECK(decide_attach(live, kOurs) == AttachDecision::AlreadyAttached);
    CHECK(decide_attach(live, kOurs + 1) == AttachDecision::OtherCgroup);

    // A detach killed after "drain": the link still names the cgroup, but the programs drain.
    Attachment draining = live;
    draining.draining = true;
    CHECK(decide_attach(draining, kOurs) == AttachDecision::TakeDownFirst);
    CHECK(decide_attach(draining, kOurs + 1) == AttachDecision::TakeDownFirst);

    // A detach killed after "detach_sockops": the link is detached from every cgroup.
    Attachment detached = live;
    detached.cgroup_id = 0;
    CHECK(decide_attach(detached, kOurs) == AttachDecision::TakeDownFirst);

    // A pin dir without a link: a killed attach renamed nothing, or a killed detach removed the link first.
    Attachment no_link;
    no_link.dir = true;
    CHECK(decide_attach(no_link, kOurs) == AttachDecision::TakeDownFirst);
}
