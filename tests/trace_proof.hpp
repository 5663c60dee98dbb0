// The proof that a tracing program on the receive path works: load it (CO-RE against the running kernel's BTF),
// attach it through a pinned link, read a test socket, compare what it counted with what was read, detach.
// Used by the e2e test on the host and by the VM tool (tests/vm/trace.cpp) inside the 6.1 and 6.12 guests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace sockredir::test {

struct TraceProof {
    std::string program; // its name, and the section that chose its type
    std::string section;
    uint64_t bytes_read = 0; // what the test read from its socket
    uint64_t reads = 0;      // successful recv() calls of the test
    uint64_t nonblocking_reads = 0;
    uint64_t counted_bytes = 0; // what the program counted for that socket
    uint64_t counted_calls = 0;
    uint64_t counted_nonblocking = 0;
    bool link_pinned = false; // the link was pinned and found again by path
    bool detached = false;    // after unpinning and closing, the program is gone from the kernel
};

// Runs the proof in the current network namespace, on loopback. `pin_dir` is an existing directory on bpffs; the
// link is pinned there as "trace_link" and removed before the return. Throws base::Error (a refused load carries
// the verifier log) or std::runtime_error on a socket failure.
TraceProof prove_recv_tracing(std::span<const std::byte> object, const std::string& pin_dir);

// "program=... bytes_read=... counted_bytes=..." for messages and the VM's log.
std::string describe(const TraceProof& p);

} // namespace sockredir::test
