// Segmentation kernels for the offloaded egress path: one call cuts a TCP super-packet (as the
// TUN device hands it over with TSO) or a UDP one (a pod's UDP_SEGMENT send, with USO) into
// complete packets, each behind a copy of a fixed prefix (VXLAN + inner Ethernet), copying each
// payload chunk and summing it in the same pass.
// TypeScript decides everything around it (whether to segment, the MSS, the prefix, where the
// output goes and how it is sent); this is the byte loop it measured too slow in JavaScript.
#include <errno.h>

#include <algorithm>
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

// Where one call's input and output are, checked: mem, the IPv4 packet at ip with headers of
// hlen bytes and `payload` bytes after them, cut into chunks of at most mss bytes written at out,
// each behind the prefixLen bytes already at out.
struct Cut {
  Span<uint8_t> mem;
  int32_t ip = 0, ihl = 0, thl = 0, payload = 0, mss = 0, out = 0, prefix = 0;
  int32_t nseg = 0;
};

// Checks a cut's numbers (thl_lo..thl_hi bounds the transport header); false when they do not
// describe an input and a non-overlapping output inside mem.
bool Check(Cut* c, int32_t thl_lo, int32_t thl_hi) {
  // Every operand capped first, then bounds in 64-bit arithmetic, so nothing below can overflow.
  if (c->ip < 0 || c->out < 0 || c->ihl < 20 || c->ihl > 60 || c->thl < thl_lo || c->thl > thl_hi || c->payload < 1 ||
      c->payload > 0xffff || c->mss < 1 || c->mss > 0xffff || c->prefix < 0 || c->prefix > 256) {
    return false;
  }
  const int32_t hlen = c->ihl + c->thl;
  // Each segment's IPv4 total length must fit its 16-bit field.
  if (hlen + std::min(c->mss, c->payload) > 0xffff || static_cast<uint64_t>(c->ip) + hlen + c->payload > c->mem.len) return false;
  c->nseg = (c->payload + c->mss - 1) / c->mss;
  const uint64_t end_in = static_cast<uint64_t>(c->ip) + hlen + c->payload;
  const uint64_t need =
      static_cast<uint64_t>(c->nseg) * static_cast<uint64_t>(c->prefix + hlen) + static_cast<uint64_t>(c->payload);
  if (static_cast<uint64_t>(c->out) + need > c->mem.len) return false;
  // The output must not overlap the input.
  return static_cast<uint64_t>(c->out) >= end_in || static_cast<uint64_t>(c->out) + need <= static_cast<uint64_t>(c->ip);
}

// Reads a cut's arguments: (mem, ip, ihl[, thl], payload, mss, out, prefixLen), thl only for
// TCP (UDP's header is 8 bytes). False with a JavaScript exception pending on a bad type.
bool ReadCut(const Args& a, bool tcp, Cut* c) {
  size_t i = 0;
  bool ok = a.Bytes(i++, "mem", &c->mem) && a.Int32(i++, "ip", &c->ip) && a.Int32(i++, "ihl", &c->ihl);
  if (tcp) {
    ok = ok && a.Int32(i++, "thl", &c->thl);
  } else {
    c->thl = 8;
  }
  return ok && a.Int32(i++, "payload", &c->payload) && a.Int32(i++, "mss", &c->mss) && a.Int32(i++, "out", &c->out) &&
         a.Int32(i++, "prefixLen", &c->prefix);
}

// The sum of an IPv4 header with its total length, ID and checksum zeroed.
uint64_t IpBase(const uint8_t* ip, int32_t ihl) {
  uint8_t tmpl[60];
  std::memcpy(tmpl, ip, static_cast<size_t>(ihl));
  std::memset(tmpl + 2, 0, 4);
  std::memset(tmpl + 10, 0, 2);
  return SumBE(tmpl, static_cast<size_t>(ihl), 0);
}

// Cuts a checked cut into its segments, back to back at mem[out]: for each segment j the prefix
// (copied from the first one's), the headers and payload chunk j, copied and summed in one pass,
// and the IPv4 total length, ID + j and header checksum; then fix(j, plen, l4, psum) writes the
// transport header's fields that differ per segment (l4: its header, psum: the chunk's sum).
// Returns the bytes written.
template <typename Fix>
int32_t CutAll(const Cut& c, Fix fix) {
  const int32_t hlen = c.ihl + c.thl;
  const uint8_t* sip = c.mem.data + c.ip;
  const uint16_t id0 = Get16(sip + 4);
  const uint64_t ip_base = IpBase(sip, c.ihl);
  uint8_t* w = c.mem.data + c.out;
  const uint8_t* first = w;
  for (int32_t j = 0; j < c.nseg; j++) {
    const int32_t plen = j == c.nseg - 1 ? c.payload - j * c.mss : c.mss;
    if (j > 0) std::memcpy(w, first, static_cast<size_t>(c.prefix));
    uint8_t* dip = w + c.prefix;
    std::memcpy(dip, sip, static_cast<size_t>(hlen));
    const uint64_t psum = CopySum(dip + hlen, sip + hlen + static_cast<size_t>(j) * c.mss, static_cast<size_t>(plen));
    const uint16_t tot = static_cast<uint16_t>(hlen + plen);
    const uint16_t id = static_cast<uint16_t>(id0 + j);
    Put16(dip + 2, tot);
    Put16(dip + 4, id);
    Put16(dip + 10, static_cast<uint16_t>(~Fold(ip_base + tot + id)));
    fix(j, plen, dip + c.ihl, psum);
    w = dip + hlen + plen;
  }
  return static_cast<int32_t>(w - first);
}

// tcpSegment(mem, ip, ihl, thl, payload, mss, out, prefixLen) -> bytes written | -EINVAL.
// Input: the IPv4/TCP super-packet at mem[ip], headers of ihl + thl bytes, `payload` bytes after
// them. Output at mem[out]: the prefixLen bytes already at mem[out], then for each segment j:
// [prefix][IPv4 + TCP headers][payload chunk j], segments back to back, each a complete packet:
// IPv4 total length, ID + j and header checksum; TCP sequence + j*mss, FIN and PSH on the last
// segment only, CWR on the first only, and the full TCP checksum.
Napi::Value TcpSegment(const Napi::CallbackInfo& info) {
  Args a(info, "tcpSegment");
  Cut c;
  if (!ReadCut(a, true, &c)) return Napi::Value();
  if (!Check(&c, 20, 60)) return Int(a.env(), -EINVAL);
  const int32_t thl = c.thl;
  const uint8_t* sth = c.mem.data + c.ip + c.ihl;
  const uint32_t seq0 = Get32(sth + 4);
  const uint8_t flags0 = sth[13];
  // Pseudo-header without the length: addresses and protocol.
  const uint64_t pseudo = SumBE(c.mem.data + c.ip + 12, 8, 6);
  // The TCP header's sum with the fields that differ per segment zeroed (sequence, flags and
  // checksum): each segment adds its own values to it.
  uint8_t tmpl[60];
  std::memcpy(tmpl, sth, static_cast<size_t>(thl));
  std::memset(tmpl + 4, 0, 4);
  tmpl[13] = 0;
  std::memset(tmpl + 16, 0, 2);
  const uint64_t tcp_base = SumBE(tmpl, static_cast<size_t>(thl), 0);
  const int32_t written = CutAll(c, [&](int32_t j, int32_t plen, uint8_t* dth, uint64_t psum) {
    const uint32_t seq = seq0 + static_cast<uint32_t>(j) * static_cast<uint32_t>(c.mss);
    Put32(dth + 4, seq);
    uint8_t f = flags0;
    if (j < c.nseg - 1) f &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (j > 0) f &= static_cast<uint8_t>(~kTcpCwr);
    dth[13] = f;
    const uint64_t s = pseudo + static_cast<uint64_t>(thl + plen) + tcp_base + (seq >> 16) + (seq & 0xffff) + f + psum;
    Put16(dth + 16, static_cast<uint16_t>(~Fold(s)));
  });
  return Int(a.env(), written);
}

// udpSegment(mem, ip, ihl, payload, mss, out, prefixLen) -> bytes written | -EINVAL.
// Input: the IPv4/UDP super-packet at mem[ip] (a UDP_L4 GSO packet: headers of ihl + 8 bytes,
// `payload` bytes after them). Output at mem[out] as tcpSegment's: for each datagram j,
// [prefix][IPv4 + UDP headers][payload chunk j], each complete: IPv4 total length, ID + j and
// header checksum; UDP length and the full UDP checksum (0xffff where the sum comes out 0).
Napi::Value UdpSegment(const Napi::CallbackInfo& info) {
  Args a(info, "udpSegment");
  Cut c;
  if (!ReadCut(a, false, &c)) return Napi::Value();
  if (!Check(&c, 8, 8)) return Int(a.env(), -EINVAL);
  const uint8_t* sip = c.mem.data + c.ip;
  const uint8_t* suh = sip + c.ihl;
  // Pseudo-header without the length, and the ports: the rest differs per datagram.
  const uint64_t base = SumBE(sip + 12, 8, 17) + Get16(suh) + Get16(suh + 2);
  const int32_t written = CutAll(c, [&](int32_t, int32_t plen, uint8_t* duh, uint64_t psum) {
    const uint16_t ulen = static_cast<uint16_t>(8 + plen);
    Put16(duh + 4, ulen);
    // The length counts twice: in the pseudo-header and in the UDP header.
    const uint16_t sum = static_cast<uint16_t>(~Fold(base + 2ull * ulen + psum));
    Put16(duh + 6, sum == 0 ? 0xffff : sum);
  });
  return Int(a.env(), written);
}

}  // namespace

void RegisterSegment(Napi::Env env, Napi::Object exports, Napi::Object /*constants*/) {
  exports.Set("tcpSegment", Napi::Function::New(env, TcpSegment, "tcpSegment"));
  exports.Set("udpSegment", Napi::Function::New(env, UdpSegment, "udpSegment"));
}

}  // namespace tulle
