// attach_or_verdict: attach, or refuse with check's verdict; the kernel release decides when the probes run first.
#include "loader/app/checked_attach.hpp"

#include <sys/utsname.h>
#include <unistd.h>

#include <string_view>

#include "loader/app/check.hpp"
#include "loader/app/selftest.hpp"
#include "loader/base/decimal.hpp"
#include "loader/base/error.hpp"

namespace sockredir::app {

using base::Error;
using base::parse_decimal;

namespace {

// Linux version of the running kernel as major * 1000 + minor, 0 when unknown.
unsigned kernel_version()
{
    struct utsname u {};
    if (::uname(&u) != 0)
        return 0;
    // "MAJOR.MINOR..." by hand: sscanf would link glibc's scanf engine, a tenth of this static binary.
    const std::string_view release(u.release);
    const auto dot = release.find('.');
    if (dot == std::string_view::npos)
        return 0;
    const auto rest = release.substr(dot + 1);
    const auto major = parse_decimal(release.substr(0, dot));
    const auto minor = parse_decimal(rest.substr(0, rest.find_first_not_of("0123456789")));
    if (!major || !minor || *major > 1000 || *minor > 999)
        return 0;
    return *major * 1000 + *minor;
}

} // namespace

AttachResult attach_or_verdict(const AttachOptions& options)
{
    const auto refuse_unless_capable = [&] {
        // What this object needs: its program types, map types and helpers.
        const auto report = probe_for_verdict(options.object);
        if (!can_run(report))
            throw Error(verdict(report) + "; see sockredir-min check");
    };
    if (::geteuid() != 0 || kernel_version() < 5015)
        refuse_unless_capable();
    // Killed and cleaned up by its destructor if attach fails.
    SelfTestRun selftests(options.object, SelfTestScope::Cheap);
    AttachResult result;
    try {
        result = attach(options);
    } catch (const Error&) {
        refuse_unless_capable();
        throw;
    }
    // Found attached: nothing changes, and the findings are already stored; the destructor stops the probes.
    if (result.outcome == AttachOutcome::Attached) {
        result.defects = defect_bits(selftests.finish());
        record_defects(result.pin_dir, result.defects);
    }
    return result;
}

} // namespace sockredir::app
