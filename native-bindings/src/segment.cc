// TCP segmentation kernel for the offloaded egress path: one call cuts a TCP super-packet (as the
// TUN device hands it over with TSO) into complete segments, each behind a copy of a fixed
// prefix (VXLAN + inner Ethernet), copying each payload chunk and summing it in the same pass.
// TypeScript decides everything around it (whether to segment, the MSS, the prefix, where the
// output goes and how it is sent); this is the byte loop it measured too slow in JavaScript.
#include <errno.h>

#include <cstring>

#include "addon.h"
#include "args.h"
#include "csum.h"

namespace tulle {
namespace {

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;

inline uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Get32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void Put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// Big-endian one's-complement sum of p[0, len), unfolded (64-bit accumulator).
uint64_t SumBE(const uint8_t* p, size_t len, uint64_t sum) {
  while (len >= 2) {
    sum += Get16(p);
    p += 2;
    len -= 2;
  }
  if (len) sum += static_cast<uint64_t>(p[0]) << 8;
  return sum;
}

// Copies len bytes from src to dst and returns their big-endian one's-complement sum (unfolded).
// Sums native-endian 32-bit halves of 8-byte loads: folded and byte-swapped once at the end, that
// is the big-endian sum (the one's-complement sum does not depend on byte order but for a swap).
uint64_t CopySum(uint8_t* dst, const uint8_t* src, size_t len) {
  size_t i;
  const uint64_t wide = CopySumWide(dst, src, len, &i);
  // Four independent accumulators over 32-byte blocks keep the adds off one dependency chain.
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (; i + 32 <= len; i += 32) {
    uint64_t v[4];
    std::memcpy(v, src + i, 32);
    std::memcpy(dst + i, v, 32);
    a0 += (v[0] & 0xffffffffu) + (v[0] >> 32);
    a1 += (v[1] & 0xffffffffu) + (v[1] >> 32);
    a2 += (v[2] & 0xffffffffu) + (v[2] >> 32);
    a3 += (v[3] & 0xffffffffu) + (v[3] >> 32);
  }
  uint64_t acc = a0 + a1 + a2 + a3;
  // The wide sum is of 16-bit words: folded to 16 bits it adds to the 32-bit-word sums alike.
  acc += wide;
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    std::memcpy(&v, src + i, 8);
    std::memcpy(dst + i, &v, 8);
    acc += (v & 0xffffffffu) + (v >> 32);
  }
  while (acc >> 32) acc = (acc & 0xffffffffu) + (acc >> 32);
  uint32_t a = static_cast<uint32_t>(acc);
  a = (a & 0xffff) + (a >> 16);
  a = (a & 0xffff) + (a >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  a = ((a & 0xff) << 8) | (a >> 8);
#endif
  std::memcpy(dst + i, src + i, len - i);
  return SumBE(src + i, len - i, a);
}

uint16_t Fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// tcpSegment(mem, ip, ihl, thl, payload, mss, out, prefixLen) -> bytes written | -EINVAL.
// Input: the IPv4/TCP super-packet at mem[ip], headers of ihl + thl bytes, `payload` bytes after
// them. Output at mem[out]: the prefixLen bytes already at mem[out], then for each segment j:
// [prefix][IPv4 + TCP headers][payload chunk j], segments back to back, each a complete packet:
// IPv4 total length, ID + j and header checksum; TCP sequence + j*mss, FIN and PSH on the last
// segment only, CWR on the first only, and the full TCP checksum.
Napi::Value TcpSegment(const Napi::CallbackInfo& info) {
  Args a(info, "tcpSegment");
  Span<uint8_t> mem;
  int32_t ip, ihl, thl, payload, mss, out, prefix;
  if (!a.Bytes(0, "mem", &mem) || !a.Int32(1, "ip", &ip) || !a.Int32(2, "ihl", &ihl) || !a.Int32(3, "thl", &thl) ||
      !a.Int32(4, "payload", &payload) || !a.Int32(5, "mss", &mss) || !a.Int32(6, "out", &out) ||
      !a.Int32(7, "prefixLen", &prefix)) {
    return Napi::Value();
  }
  const int32_t hlen = ihl + thl;
  // Bounds in 64-bit arithmetic, with every operand capped first, so nothing below can overflow.
  if (ip < 0 || out < 0 || ihl < 20 || ihl > 60 || thl < 20 || thl > 60 || payload < 1 || payload > 0xffff ||
      mss < 1 || mss > 0xffff || prefix < 0 || prefix > 256 ||
      static_cast<uint64_t>(ip) + hlen + payload > mem.len) {
    return Int(a.env(), -EINVAL);
  }
  const int32_t nseg = (payload + mss - 1) / mss;
  const uint64_t need = static_cast<uint64_t>(nseg) * static_cast<uint64_t>(prefix + hlen) + static_cast<uint64_t>(payload);
  if (static_cast<uint64_t>(out) + need > mem.len) return Int(a.env(), -EINVAL);
  // The output must not overlap the input.
  if (!(static_cast<uint64_t>(out) >= static_cast<uint64_t>(ip) + hlen + payload ||
        static_cast<uint64_t>(out) + need <= static_cast<uint64_t>(ip))) {
    return Int(a.env(), -EINVAL);
  }
  uint8_t* base = mem.data;
  const uint8_t* sip = base + ip;
  const uint8_t* sth = sip + ihl;
  const uint16_t id0 = Get16(sip + 4);
  const uint32_t seq0 = Get32(sth + 4);
  const uint8_t flags0 = sth[13];
  // Pseudo-header without the length: addresses and protocol.
  const uint64_t pseudo = SumBE(sip + 12, 8, 6);
  // Sums of the headers with the fields that differ per segment zeroed (IPv4 total length, ID and
  // checksum; TCP sequence, flags and checksum): each segment adds its own values to these.
  uint8_t tmpl[120];
  std::memcpy(tmpl, sip, static_cast<size_t>(hlen));
  std::memset(tmpl + 2, 0, 4);
  std::memset(tmpl + 10, 0, 2);
  std::memset(tmpl + ihl + 4, 0, 4);
  tmpl[ihl + 13] = 0;
  std::memset(tmpl + ihl + 16, 0, 2);
  const uint64_t ip_base = SumBE(tmpl, static_cast<size_t>(ihl), 0);
  const uint64_t tcp_base = SumBE(tmpl + ihl, static_cast<size_t>(thl), 0);

  uint8_t* w = base + out;
  const uint8_t* first = w;
  for (int32_t j = 0; j < nseg; j++) {
    const int32_t plen = j == nseg - 1 ? payload - j * mss : mss;
    if (j > 0) std::memcpy(w, first, static_cast<size_t>(prefix));
    uint8_t* dip = w + prefix;
    uint8_t* dth = dip + ihl;
    std::memcpy(dip, sip, static_cast<size_t>(hlen));
    const uint64_t psum = CopySum(dth + thl, sth + thl + static_cast<size_t>(j) * mss, static_cast<size_t>(plen));
    const uint16_t tot = static_cast<uint16_t>(hlen + plen);
    const uint16_t id = static_cast<uint16_t>(id0 + j);
    Put16(dip + 2, tot);
    Put16(dip + 4, id);
    Put16(dip + 10, static_cast<uint16_t>(~Fold(ip_base + tot + id)));
    const uint32_t seq = seq0 + static_cast<uint32_t>(j) * static_cast<uint32_t>(mss);
    Put32(dth + 4, seq);
    uint8_t f = flags0;
    if (j < nseg - 1) f &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (j > 0) f &= static_cast<uint8_t>(~kTcpCwr);
    dth[13] = f;
    const uint64_t s = pseudo + static_cast<uint64_t>(thl + plen) + tcp_base + (seq >> 16) + (seq & 0xffff) + f + psum;
    Put16(dth + 16, static_cast<uint16_t>(~Fold(s)));
    w += prefix + hlen + plen;
  }
  return Int(a.env(), static_cast<int32_t>(w - first));
}

}  // namespace

void RegisterSegment(Napi::Env env, Napi::Object exports, Napi::Object /*constants*/) {
  exports.Set("tcpSegment", Napi::Function::New(env, TcpSegment, "tcpSegment"));
}

}  // namespace tulle
