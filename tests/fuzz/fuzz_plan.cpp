// libFuzzer target: arbitrary bytes through sockredir_spec (elf::read, parse_object, the open phase, the contract), all
// before any syscall.
#include <cstddef>
#include <cstdint>
#include <span>

#include "loader/app/contract.hpp"
#include "loader/base/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // libFuzzer hands over a heap buffer of exactly `size` bytes, so ASan sees any read past the end.
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        // An explicit --max-inflight: the default reads /proc, which a fuzzing loop has no business doing.
        (void)sockredir::app::sockredir_spec(bytes, {0, sockredir::app::kMinInflight, {}});
        // An object that opens also goes through the --max-sockets branch.
        (void)sockredir::app::sockredir_spec(bytes, {sockredir::app::kMaxSockets, sockredir::app::kMaxInflight, {}});
    } catch (const sockredir::base::Error&) {
        // The one documented way to refuse an object. Anything else escapes and aborts: a finding.
    }
    return 0;
}
