// libFuzzer target: arbitrary bytes through plan_object (elf::read, parse_object, make_plan), all before any syscall.
#include <cstddef>
#include <cstdint>
#include <span>

#include "elf/error.hpp"
#include "loader/plan.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // libFuzzer hands over a heap buffer of exactly `size` bytes, so ASan sees any read past the end.
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        (void)sockredir::plan_object(bytes, {});
        // An object that plans also goes through make_plan's --max-sockets branch.
        (void)sockredir::plan_object(bytes, {sockredir::kMaxSockets});
    } catch (const sockredir::Error&) {
        // The one documented way to refuse an object. Anything else escapes and aborts: a finding.
    }
    return 0;
}
