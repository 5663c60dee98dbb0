// libFuzzer target: arbitrary bytes through plan_object (elf::read, parse_object, make_plan), all before any syscall.
#include <cstddef>
#include <cstdint>
#include <span>

#include "loader/app/plan.hpp"
#include "loader/base/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // libFuzzer hands over a heap buffer of exactly `size` bytes, so ASan sees any read past the end.
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        (void)sockredir::app::plan_object(bytes, {});
        // An object that plans also goes through make_plan's --max-sockets branch.
        (void)sockredir::app::plan_object(bytes, {sockredir::app::kMaxSockets});
    } catch (const sockredir::base::Error&) {
        // The one documented way to refuse an object. Anything else escapes and aborts: a finding.
    }
    return 0;
}
