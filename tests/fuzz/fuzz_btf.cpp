// libFuzzer target: arbitrary bytes as .BTF and .BTF.ext through every entry point of elf/btf (tests/fuzz/btf_harness).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "tests/fuzz/btf_harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    // libFuzzer hands over a heap buffer of exactly `size` bytes, so ASan sees any read past the end.
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    const auto broken = sockredir::test::check_btf_fuzz_input(bytes);
    if (!broken.empty()) {
        std::fprintf(stderr, "fuzz_btf: %s\n", broken.c_str());
        std::abort();
    }
    return 0;
}
