// sockredir-vm-trace TP_OBJECT FEXIT_OBJECT PIN_DIR: inside a vmtest guest, the receive-path tracing proof
// (tests/trace_proof) for tp_btf and fexit. fexit must work on every kernel we support; tp_btf on sock_recv_length
// from Linux 6.5, and before that it must be refused in one line naming the missing tracepoint. Exit 0 when all is
// as expected; each result is one "TRACE ..." line.
#include <sys/utsname.h>

#include <cstdio>
#include <exception>
#include <string>

#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"
#include "loader/base/file.hpp"
#include "tests/trace_proof.hpp"

namespace {

using namespace sockredir;

// The running kernel as major * 1000 + minor.
unsigned kernel_version()
{
    utsname u{};
    if (::uname(&u) != 0)
        return 0;
    const std::string_view r(u.release);
    const auto dot = r.find('.');
    const auto rest = r.substr(dot + 1);
    const auto major = base::parse_decimal(r.substr(0, dot));
    const auto minor = base::parse_decimal(rest.substr(0, rest.find_first_not_of("0123456789")));
    return major && minor ? *major * 1000 + *minor : 0;
}

bool proof_holds(const test::TraceProof& p)
{
    return p.bytes_read > 0 && p.counted_bytes == p.bytes_read && p.counted_calls == p.reads &&
           p.nonblocking_reads > 0 && p.counted_nonblocking == p.nonblocking_reads && p.link_pinned && p.detached;
}

// One object: "pass" when the proof must hold, otherwise the text the refusal must contain.
bool run(const char* kind, const std::string& object, const std::string& pin_dir, const std::string& refusal)
{
    try {
        const auto p = test::prove_recv_tracing(base::read_file_bytes(object), pin_dir);
        const bool ok = refusal.empty() && proof_holds(p);
        std::printf("TRACE %s %s: %s\n", kind, ok ? "ok" : "FAIL", describe(p).c_str());
        return ok;
    } catch (const std::exception& e) {
        const bool ok = !refusal.empty() && std::string(e.what()).find(refusal) != std::string::npos;
        std::printf("TRACE %s %s: refused: %s\n", kind, ok ? "ok" : "FAIL", e.what());
        return ok;
    }
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 4) {
        std::fprintf(stderr, "usage: sockredir-vm-trace TP_OBJECT FEXIT_OBJECT PIN_DIR\n");
        return 2;
    }
    const unsigned version = kernel_version();
    // sock:sock_recv_length came with Linux 6.5 (kernel-notes section 6).
    const std::string tp_refusal = version >= 6005 ? "" : "tracepoint 'sock_recv_length': not in this kernel's BTF";
    const bool tp = run("tp_btf", argv[1], argv[3], tp_refusal);
    const bool fexit = run("fexit", argv[2], argv[3], "");
    return tp && fexit ? 0 : 1;
}
