#include "csum.h"

#if defined(__x86_64__) || defined(__i386__)
#define TULLE_AVX2 1
#include <immintrin.h>
#endif

namespace tulle {

#ifdef TULLE_AVX2
namespace {

bool HaveAvx2() {
  static const bool have = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return have;
}

// Each 64-byte step adds at most 2 * 0xffff to a 32-bit lane: lanes are flushed into the 64-bit
// total every kFlushSteps steps, far before they could overflow.
constexpr size_t kFlushSteps = 4096;

__attribute__((target("avx2"))) uint64_t Lanes(__m256i acc) {
  alignas(32) uint32_t v[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), acc);
  uint64_t s = 0;
  for (uint32_t x : v) s += x;
  return s;
}

// The sum of src[0, len) rounded down to 64 bytes, copying what it covers to dst when kCopy.
template <bool kCopy>
__attribute__((target("avx2"))) uint64_t Avx2(uint8_t* dst, const uint8_t* src, size_t len, size_t* done) {
  const __m256i zero = _mm256_setzero_si256();
  uint64_t total = 0;
  size_t i = 0;
  while (i + 64 <= len) {
    __m256i acc0 = zero, acc1 = zero;
    for (size_t k = 0; k < kFlushSteps && i + 64 <= len; k++, i += 64) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32));
      if (kCopy) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), a);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 32), b);
      }
      acc0 = _mm256_add_epi32(acc0, _mm256_unpacklo_epi16(a, zero));
      acc1 = _mm256_add_epi32(acc1, _mm256_unpackhi_epi16(a, zero));
      acc0 = _mm256_add_epi32(acc0, _mm256_unpacklo_epi16(b, zero));
      acc1 = _mm256_add_epi32(acc1, _mm256_unpackhi_epi16(b, zero));
    }
    total += Lanes(acc0) + Lanes(acc1);
  }
  *done = i;
  return total;
}

}  // namespace

uint64_t SumWide(const uint8_t* p, size_t len, size_t* done) {
  if (!HaveAvx2()) {
    *done = 0;
    return 0;
  }
  return Avx2<false>(nullptr, p, len, done);
}

uint64_t CopySumWide(uint8_t* dst, const uint8_t* src, size_t len, size_t* done) {
  if (!HaveAvx2()) {
    *done = 0;
    return 0;
  }
  return Avx2<true>(dst, src, len, done);
}

#else  // no AVX2 on this architecture: the callers' scalar loops do all of it

uint64_t SumWide(const uint8_t*, size_t, size_t* done) {
  *done = 0;
  return 0;
}

uint64_t CopySumWide(uint8_t*, const uint8_t*, size_t, size_t* done) {
  *done = 0;
  return 0;
}

#endif

}  // namespace tulle
