// Kernel offload helpers: UDP_GRO and UDP_SEGMENT on the underlay sockets, and the one byte kernel
// the offloaded path needs from C, a batch of Internet checksums (RFC 1071) over ranges of one
// buffer. Protocol decisions (what to sum, where the result goes) stay in TypeScript.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <cstring>

#include "addon.h"
#include "args.h"
#include "csum.h"


namespace tulle {
namespace {

// udpSetGro(fd, on) -> 0 | -errno.
Napi::Value UdpSetGro(const Napi::CallbackInfo& info) {
  Args a(info, "udpSetGro");
  int32_t fd;
  bool on;
  if (!a.Int32(0, "fd", &fd) || !a.Bool(1, "on", &on)) return Napi::Value();
  const int v = on ? 1 : 0;
  if (setsockopt(fd, SOL_UDP, UDP_GRO, &v, sizeof v) < 0) return Int(a.env(), NegErrno());
  return Int(a.env(), 0);
}

// udpGsoProbe(fd) -> 1 when the kernel knows UDP_SEGMENT on this socket, 0 when not, -errno.
Napi::Value UdpGsoProbe(const Napi::CallbackInfo& info) {
  Args a(info, "udpGsoProbe");
  int32_t fd;
  if (!a.Int32(0, "fd", &fd)) return Napi::Value();
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &len) < 0) {
    return Int(a.env(), errno == ENOPROTOOPT ? 0 : NegErrno());
  }
  return Int(a.env(), 1);
}

// One's-complement sum of p[0, len) as big-endian 16-bit words, folded to 16 bits, not
// complemented. Sums native-endian 32-bit words in a 64-bit accumulator and swaps at the end
// (the sum is byte-order independent up to that swap).
uint32_t Sum16(const uint8_t* p, size_t len) {
  size_t wide;
  uint64_t sum = SumWide(p, len, &wide);
  p += wide;
  len -= wide;
  while (len >= 32) {
    uint32_t w[8];
    std::memcpy(w, p, sizeof w);
    sum += static_cast<uint64_t>(w[0]) + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
    p += 32;
    len -= 32;
  }
  while (len >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    sum += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    sum += h;
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    const uint16_t h = static_cast<uint16_t>(p[0]);  // the byte's place as a big-endian high byte
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    sum += h;
#else
    sum += static_cast<uint16_t>(h << 8);
#endif
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint32_t s = static_cast<uint32_t>(sum);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  s = ((s & 0xff) << 8) | (s >> 8);
#endif
  return s;
}

// csumBatch(buf, offs, lens, sums, count) -> count | -EINVAL.
// sums[i] = folded one's-complement sum of buf[offs[i], offs[i] + lens[i]) (0..0xffff).
// A range outside buf gets 0x10000 (never a valid sum) and the call goes on.
Napi::Value CsumBatch(const Napi::CallbackInfo& info) {
  Args a(info, "csumBatch");
  Span<uint8_t> buf;
  Span<int32_t> offs, lens;
  Span<uint32_t> sums;
  int32_t count;
  if (!a.Bytes(0, "buf", &buf) || !a.Int32s(1, "offs", &offs) || !a.Int32s(2, "lens", &lens) ||
      !a.Uint32s(3, "sums", &sums) || !a.Int32(4, "count", &count)) {
    return Napi::Value();
  }
  if (count < 0) return a.RangeError("count", "must not be negative");
  const size_t n = static_cast<size_t>(count);
  if (offs.len < n || lens.len < n || sums.len < n) return a.RangeError("count", "exceeds an array's length");
  for (size_t i = 0; i < n; i++) {
    const int32_t off = offs.data[i], len = lens.data[i];
    if (off < 0 || len < 0 || static_cast<size_t>(off) + static_cast<size_t>(len) > buf.len) {
      sums.data[i] = 0x10000;
      continue;
    }
    sums.data[i] = Sum16(buf.data + off, static_cast<size_t>(len));
  }
  return Int(a.env(), count);
}

}  // namespace

void RegisterOffload(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("udpSetGro", Napi::Function::New(env, UdpSetGro, "udpSetGro"));
  exports.Set("udpGsoProbe", Napi::Function::New(env, UdpGsoProbe, "udpGsoProbe"));
  exports.Set("csumBatch", Napi::Function::New(env, CsumBatch, "csumBatch"));
  SetConstant(constants, "UDP_SEGMENT", UDP_SEGMENT);
  SetConstant(constants, "UDP_GRO", UDP_GRO);
}

}  // namespace tulle
