// Wide loops for the Internet checksum: the bulk of a range summed (and, for segmentation,
// copied) 64 bytes at a time with AVX2 where the CPU has it. Each returns an unfolded sum of the
// range's native-endian 16-bit words and how many bytes it covered (a multiple of 64; 0 without
// AVX2); callers add the rest with their scalar loops, whose sums of native-endian words fold to
// the same value, and swap bytes once at the end as before.
#ifndef TULLE_CSUM_H_
#define TULLE_CSUM_H_

#include <cstddef>
#include <cstdint>

namespace tulle {

// Sum of p[0, len) rounded down to 64 bytes; *done = bytes covered.
uint64_t SumWide(const uint8_t* p, size_t len, size_t* done);

// The same over src, copying what it covers to dst (which must not overlap src).
uint64_t CopySumWide(uint8_t* dst, const uint8_t* src, size_t len, size_t* done);

}  // namespace tulle

#endif  // TULLE_CSUM_H_
