// Unit tests of loader/app/evict's pure part: what detach says of the sockets it handed back or had to leave.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "loader/app/evict.hpp"

using namespace sockredir::app;
using namespace std::chrono_literals;

TEST_CASE("with no socket in the map the detach line says nothing more")
{
    EvictResult r;
    CHECK(evict_summary(r).empty());
    CHECK(evict_failure(r, 5s).empty());
}

TEST_CASE("sockets handed back are counted with the time and the program that did it")
{
    EvictResult r;
    r.ran = true;
    r.how = "sockredir_evict";
    r.before = 16;
    r.took = 61ms;
    CHECK(evict_summary(r) == "; 16 of 16 socket(s) back on TCP in 61 ms (sockredir_evict)");
    CHECK(evict_failure(r, 5s).empty());
}

TEST_CASE("sockets left with unread data at the timeout are one line of failure, and counted in the summary")
{
    EvictResult r;
    r.ran = true;
    r.how = "sockredir_unmap";
    r.before = 2;
    r.left = 1;
    r.unread = 1;
    r.took = 5004ms;
    CHECK(evict_summary(r) == "; 1 of 2 socket(s) back on TCP in 5004 ms (sockredir_unmap)");
    const auto line = evict_failure(r, 5s);
    CHECK(line.find('\n') == std::string::npos);
    CHECK(line.find("1 socket(s) still hold unread redirected data after 5 s: left in the map with their data") == 0);
    CHECK(line.find("--drain-timeout") != std::string::npos);
    CHECK(evict_failure(r, 1500ms).find("after 1.5 s") != std::string::npos);
    // Kept for another reason too (a delete the kernel refused, a socket that entered late).
    r.left = 3;
    CHECK(evict_failure(r, 0s).find("3 socket(s) are still in the sockhash (1 holding unread redirected data) after "
                                    "0 s") == 0);
}

TEST_CASE("where no eviction program could run, detach says the sockets keep the sockmap path, and does not fail")
{
    EvictResult r;
    r.before = 4;
    r.left = 4;
    r.unavailable = "attach could not load them";
    CHECK(evict_summary(r) ==
          "; 4 socket(s) keep the sockmap path until their connections close (attach could not load them)");
    CHECK(evict_failure(r, 5s).empty());
    CHECK(no_evict_note("EPERM").find("note: after detach, connections will keep the sockmap path until they close") ==
          0);
}
