// TUN/TAP queues: open (TUNSETIFF), attach/detach (TUNSETQUEUE), offload settings, and batched
// reads and writes. A TUN fd yields exactly one packet per read(), so a batch read is a loop of
// read() calls ending at EAGAIN; there is no recvmmsg for TUN.
#include <algorithm>
#include <climits>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "addon.h"
#include "args.h"
#include "batch.h"

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

namespace tulle {
namespace {

// tunOpen(name, flags) -> fd | -errno. One call per queue: with IFF_MULTI_QUEUE, opening the same
// name again attaches another queue.
Napi::Value TunOpen(const Napi::CallbackInfo& info) {
  Args a(info, "tunOpen");
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  int32_t flags;
  if (!a.String(0, "name", ifr.ifr_name, sizeof ifr.ifr_name) || !a.Int32(1, "flags", &flags)) {
    return Napi::Value();
  }
  if (flags < 0 || flags > 0xffff) return a.RangeError("flags", "must fit in 16 bits");
  ifr.ifr_flags = static_cast<short>(flags);

  UniqueFd fd(open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return Int(a.env(), NegErrno());
  if (ioctl(fd.get(), TUNSETIFF, &ifr) < 0) return Int(a.env(), NegErrno());
  return Int(a.env(), State(a.env()).fds.Adopt(fd));
}

// tunSetQueue(fd, attach) -> 0 | -errno.
Napi::Value TunSetQueue(const Napi::CallbackInfo& info) {
  Args a(info, "tunSetQueue");
  int32_t fd;
  bool attach;
  if (!a.Int32(0, "fd", &fd) || !a.Bool(1, "attach", &attach)) return Napi::Value();
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
  return Int(a.env(), ioctl(fd, TUNSETQUEUE, &ifr) < 0 ? NegErrno() : 0);
}

// tunSetOffload(fd, bits) -> 0 | -errno. bits: TUN_F_* (TUNSETOFFLOAD).
Napi::Value TunSetOffload(const Napi::CallbackInfo& info) {
  Args a(info, "tunSetOffload");
  int32_t fd;
  uint32_t bits;
  if (!a.Int32(0, "fd", &fd) || !a.Uint32(1, "bits", &bits)) return Napi::Value();
  return Int(a.env(), ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(bits)) < 0 ? NegErrno() : 0);
}

// tunSetVnetHdrSize(fd, size) -> 0 | -errno (TUNSETVNETHDRSZ).
Napi::Value TunSetVnetHdrSize(const Napi::CallbackInfo& info) {
  Args a(info, "tunSetVnetHdrSize");
  int32_t fd, size;
  if (!a.Int32(0, "fd", &fd) || !a.Int32(1, "size", &size)) return Napi::Value();
  return Int(a.env(), ioctl(fd, TUNSETVNETHDRSZ, &size) < 0 ? NegErrno() : 0);
}

}  // namespace

// Reads up to max packets into slots, stopping early once max_bytes have been read; see TunRead.
int ReadBatch(int fd, uint8_t* buf, int slot, int headroom, int32_t* lens, int max, int64_t max_bytes) {
  const size_t cap = static_cast<size_t>(slot - headroom);
  int n = 0;
  int64_t bytes = 0;
  while (n < max && bytes < max_bytes) {
    ssize_t r = read(fd, buf + static_cast<size_t>(n) * slot + headroom, cap);
    if (r >= 0) {
      lens[n++] = static_cast<int32_t>(r);
      bytes += r;
      continue;
    }
    if (errno == EINTR) continue;
    if (n > 0 || errno == EAGAIN) break;
    return NegErrno();
  }
  return n;
}

int WriteBatch(int fd, const uint8_t* buf, size_t buflen, const int32_t* offs, const int32_t* lens, int count,
               int32_t* stats) {
  int ok = 0, failed = 0, last_errno = 0;
  int64_t bytes = 0;
  bool waited = false;
  for (int i = 0; i < count; i++) {
    const int32_t off = offs[i], len = lens[i];
    if (off < 0 || len < 0 || static_cast<size_t>(off) + static_cast<size_t>(len) > buflen) {
      failed++;
      last_errno = EINVAL;
      continue;
    }
    for (;;) {
      const ssize_t w = write(fd, buf + off, static_cast<size_t>(len));
      if (w >= 0) {
        ok++;
        bytes += w;
        break;
      }
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN && !waited) {
        waited = true;
        WaitWritable(fd, kWriteWaitMs);
        continue;
      }
      failed++;
      last_errno = err;
      break;
    }
  }
  stats[0] = ok;
  stats[1] = failed;
  stats[2] = last_errno;
  stats[3] = ok;
  stats[4] = static_cast<int32_t>(std::min<int64_t>(bytes, INT32_MAX));
  return ok;
}

namespace {

// tunRead(fd, buf, slotSize, headroom, lens, max[, maxBytes]) -> count | -errno.
// Packet i lands at buf[i*slotSize + headroom], at most slotSize - headroom bytes; lens[i] is what
// read() returned. With maxBytes, no further packet is read once the batch holds that many
// bytes. A packet longer than the room is cut, and read() may report either the room or the
// packet's full length: callers size slots one byte larger than any packet they accept and drop
// any lens[i] >= slotSize - headroom.
Napi::Value TunRead(const Napi::CallbackInfo& info) {
  Args a(info, "tunRead");
  int32_t fd, slot, headroom, max;
  Span<uint8_t> buf;
  Span<int32_t> lens;
  if (!a.Int32(0, "fd", &fd) || !a.Bytes(1, "buf", &buf) || !a.Int32(2, "slotSize", &slot) ||
      !a.Int32(3, "headroom", &headroom) || !a.Int32s(4, "lens", &lens) ||
      !a.Int32(5, "max", &max)) {
    return Napi::Value();
  }
  int32_t max_bytes = INT32_MAX;
  if (a.Has(6) && !a.Int32(6, "maxBytes", &max_bytes)) return Napi::Value();
  if (max_bytes < 1) return a.RangeError("maxBytes", "must be positive");
  if (max < 1 || max > kMaxBatch) return a.RangeError("max", "must be in 1..256");
  if (slot < 1) return a.RangeError("slotSize", "must be positive");
  if (headroom < 0 || headroom >= slot) return a.RangeError("headroom", "must be in 0..slotSize-1");
  if (buf.len < static_cast<size_t>(max) * static_cast<size_t>(slot)) {
    return a.RangeError("buf", "is shorter than max * slotSize");
  }
  if (lens.len < static_cast<size_t>(max)) return a.RangeError("lens", "is shorter than max");
  return Int(a.env(), ReadBatch(fd, buf.data, slot, headroom, lens.data, max, max_bytes));
}

// tunWrite(fd, buf, offs, lens, count, stats) -> packets written.
// Writes packet i = buf[offs[i], offs[i] + lens[i]) with one write() each. A failed packet is
// skipped and counted; a packet outside buf fails with EINVAL without a system call. On the first
// EAGAIN of the call, waits up to kWriteWaitMs for POLLOUT and retries that packet once.
// stats = [written, failed, last errno, written, bytes written].
Napi::Value TunWrite(const Napi::CallbackInfo& info) {
  Args a(info, "tunWrite");
  int32_t fd, count;
  Span<uint8_t> buf;
  Span<int32_t> offs, lens, stats;
  if (!a.Int32(0, "fd", &fd) || !a.Bytes(1, "buf", &buf) || !a.Int32s(2, "offs", &offs) ||
      !a.Int32s(3, "lens", &lens) || !a.Int32(4, "count", &count) ||
      !a.Int32s(5, "stats", &stats)) {
    return Napi::Value();
  }
  if (count < 0 || count > kMaxBatch) return a.RangeError("count", "must be in 0..256");
  if (offs.len < static_cast<size_t>(count)) return a.RangeError("offs", "is shorter than count");
  if (lens.len < static_cast<size_t>(count)) return a.RangeError("lens", "is shorter than count");
  if (stats.len < 5) return a.RangeError("stats", "must have at least 5 elements");

  return Int(a.env(), WriteBatch(fd, buf.data, buf.len, offs.data, lens.data, count, stats.data));
}

}  // namespace

void RegisterTun(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("tunOpen", Napi::Function::New(env, TunOpen, "tunOpen"));
  exports.Set("tunSetQueue", Napi::Function::New(env, TunSetQueue, "tunSetQueue"));
  exports.Set("tunSetOffload", Napi::Function::New(env, TunSetOffload, "tunSetOffload"));
  exports.Set("tunSetVnetHdrSize", Napi::Function::New(env, TunSetVnetHdrSize, "tunSetVnetHdrSize"));
  exports.Set("tunRead", Napi::Function::New(env, TunRead, "tunRead"));
  exports.Set("tunWrite", Napi::Function::New(env, TunWrite, "tunWrite"));
  SetConstant(constants, "IFF_TUN", IFF_TUN);
  SetConstant(constants, "IFF_TAP", IFF_TAP);
  SetConstant(constants, "IFF_NO_PI", IFF_NO_PI);
  SetConstant(constants, "IFF_MULTI_QUEUE", IFF_MULTI_QUEUE);
  SetConstant(constants, "IFF_VNET_HDR", IFF_VNET_HDR);
  SetConstant(constants, "TUN_F_CSUM", TUN_F_CSUM);
  SetConstant(constants, "TUN_F_TSO4", TUN_F_TSO4);
  SetConstant(constants, "TUN_F_TSO6", TUN_F_TSO6);
  SetConstant(constants, "TUN_F_TSO_ECN", TUN_F_TSO_ECN);
  SetConstant(constants, "TUN_F_USO4", TUN_F_USO4);
  SetConstant(constants, "TUN_F_USO6", TUN_F_USO6);
}

}  // namespace tulle
