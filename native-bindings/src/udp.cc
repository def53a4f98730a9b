// UDP underlay sockets: open/bind with optional SO_REUSEPORT and forced buffer sizes, and batched
// receive (one recvmmsg) and send (one sendmmsg per socket of the batch). Addresses cross the
// boundary as host-order numbers (10.0.0.1 = 0x0a000001) and are converted here.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "addon.h"
#include "args.h"
#include "batch.h"


namespace tulle {
namespace {

// Control buffer of one message: room for one UDP_SEGMENT (u16) or UDP_GRO (int) cmsg.
constexpr size_t kCtrlLen = CMSG_SPACE(sizeof(int));

// Sets a buffer size with the *FORCE option (ignores rmem_max/wmem_max; needs CAP_NET_ADMIN),
// falling back to the capped option when that is not permitted.
int SetBuffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) == 0) return 0;
  if (setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes) == 0) return 0;
  return NegErrno();
}

// udpOpen(ip, port, reusePort, bufBytes) -> fd | -errno.
Napi::Value UdpOpen(const Napi::CallbackInfo& info) {
  Args a(info, "udpOpen");
  uint32_t ip;
  int32_t port, buf_bytes;
  bool reuse_port;
  if (!a.Uint32(0, "ip", &ip) || !a.Int32(1, "port", &port) || !a.Bool(2, "reusePort", &reuse_port) ||
      !a.Int32(3, "bufBytes", &buf_bytes)) {
    return Napi::Value();
  }
  if (port < 0 || port > 0xffff) return a.RangeError("port", "must be in 0..65535");
  if (buf_bytes < 0) return a.RangeError("bufBytes", "must not be negative");
  Napi::Env env = a.env();

  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Int(env, NegErrno());
  const int one = 1;
  if (reuse_port && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
    return Int(env, NegErrno());
  }
  if (buf_bytes > 0) {
    int r = SetBuffer(fd.get(), SO_RCVBUFFORCE, SO_RCVBUF, buf_bytes);
    if (r == 0) r = SetBuffer(fd.get(), SO_SNDBUFFORCE, SO_SNDBUF, buf_bytes);
    if (r < 0) return Int(env, r);
  }
  // RFC 7348 section 4.3: VTEPs must not fragment. A datagram over the path MTU fails with
  // EMSGSIZE (counted by the caller) instead of leaving as IP fragments.
  const int pmtu = IP_PMTUDISC_DO;
  if (setsockopt(fd.get(), IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) < 0) return Int(env, NegErrno());
  struct sockaddr_in sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(ip);
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd.get(), reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) return Int(env, NegErrno());
  return Int(env, State(env).fds.Adopt(fd));
}

// udpLocalPort(fd) -> bound port | -errno.
Napi::Value UdpLocalPort(const Napi::CallbackInfo& info) {
  Args a(info, "udpLocalPort");
  int32_t fd;
  if (!a.Int32(0, "fd", &fd)) return Napi::Value();
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&sa), &len) < 0) return Int(a.env(), NegErrno());
  if (sa.sin_family != AF_INET) return Int(a.env(), -EAFNOSUPPORT);
  return Int(a.env(), ntohs(sa.sin_port));
}

}  // namespace

int RecvBatch(int fd, uint8_t* buf, int slot, int headroom, int32_t* lens, uint32_t* ips, uint16_t* ports, int max,
              int32_t* segs) {
  const size_t n = static_cast<size_t>(max);
  const bool gro = segs != nullptr;
  struct mmsghdr msgs[kMaxBatch];
  struct iovec iov[kMaxBatch];
  struct sockaddr_in from[kMaxBatch];
  alignas(struct cmsghdr) char ctrl[kMaxBatch][kCtrlLen];
  std::memset(msgs, 0, n * sizeof msgs[0]);
  for (size_t i = 0; i < n; i++) {
    if (gro) {
      msgs[i].msg_hdr.msg_control = ctrl[i];
      msgs[i].msg_hdr.msg_controllen = kCtrlLen;
    }
    iov[i].iov_base = buf + i * slot + headroom;
    iov[i].iov_len = static_cast<size_t>(slot - headroom);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
  }
  int r;
  do {
    r = recvmmsg(fd, msgs, static_cast<unsigned>(n), MSG_DONTWAIT | MSG_TRUNC, nullptr);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return errno == EAGAIN ? 0 : NegErrno();
  for (int i = 0; i < r; i++) {
    lens[i] = static_cast<int32_t>(msgs[i].msg_len);
    // A sender without an IPv4 address (an unnamed Unix socket) reads as 0.0.0.0:0.
    const bool v4 = msgs[i].msg_hdr.msg_namelen >= sizeof from[i] && from[i].sin_family == AF_INET;
    ips[i] = v4 ? ntohl(from[i].sin_addr.s_addr) : 0;
    ports[i] = v4 ? ntohs(from[i].sin_port) : 0;
    if (!gro) continue;
    segs[i] = 0;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int seg;
        std::memcpy(&seg, CMSG_DATA(c), sizeof seg);
        segs[i] = seg;
      }
    }
  }
  return r;
}

namespace {

// udpRecv(fd, buf, slotSize, headroom, lens, srcIPs, srcPorts, max[, segSizes]) -> count | 0 | -errno.
// One recvmmsg. With segSizes (a socket with UDP_GRO on), segSizes[i] is the segment size the
// kernel coalesced datagram i from (its UDP_GRO cmsg, an int), or 0 for a single datagram. Datagram i lands at buf[i*slotSize + headroom], at most slotSize - headroom bytes;
// MSG_TRUNC makes lens[i] the datagram's real length, larger than that capacity if it was cut.
Napi::Value UdpRecv(const Napi::CallbackInfo& info) {
  Args a(info, "udpRecv");
  int32_t fd, slot, headroom, max;
  Span<uint8_t> buf;
  Span<int32_t> lens;
  Span<uint32_t> ips;
  Span<uint16_t> ports;
  if (!a.Int32(0, "fd", &fd) || !a.Bytes(1, "buf", &buf) || !a.Int32(2, "slotSize", &slot) ||
      !a.Int32(3, "headroom", &headroom) || !a.Int32s(4, "lens", &lens) ||
      !a.Uint32s(5, "srcIPs", &ips) || !a.Uint16s(6, "srcPorts", &ports) || !a.Int32(7, "max", &max)) {
    return Napi::Value();
  }
  Span<int32_t> segs;
  const bool gro = a.Has(8);
  if (gro && !a.Int32s(8, "segSizes", &segs)) return Napi::Value();
  if (max < 1 || max > kMaxBatch) return a.RangeError("max", "must be in 1..256");
  if (slot < 1) return a.RangeError("slotSize", "must be positive");
  if (headroom < 0 || headroom >= slot) return a.RangeError("headroom", "must be in 0..slotSize-1");
  const size_t n = static_cast<size_t>(max);
  if (buf.len < n * static_cast<size_t>(slot)) return a.RangeError("buf", "is shorter than max * slotSize");
  if (lens.len < n) return a.RangeError("lens", "is shorter than max");
  if (ips.len < n) return a.RangeError("srcIPs", "is shorter than max");
  if (ports.len < n) return a.RangeError("srcPorts", "is shorter than max");
  if (gro && segs.len < n) return a.RangeError("segSizes", "is shorter than max");

  return Int(a.env(), RecvBatch(fd, buf.data, slot, headroom, lens.data, ips.data, ports.data, max, gro ? segs.data : nullptr));
}

struct SendStats {
  int sent = 0;
  int failed = 0;
  int last_errno = 0;
  int datagrams = 0;  // on the wire: a UDP_SEGMENT message counts each of its segments
  int bytes = 0;      // UDP payload bytes of the messages sent
  void Fail(int err, int count = 1) {
    failed += count;
    last_errno = err;
  }
};

// Sends msgs[0..n) on fd, calling sendmmsg until all are sent or failed. A message the kernel
// refuses (EMSGSIZE, EINVAL, ENETUNREACH...) fails alone and sending resumes after it; a full
// socket buffer (EAGAIN, ENOBUFS) gets one wait of kWriteWaitMs, then fails the rest of the run.
// segs[k] is the number of datagrams message k becomes.
void SendRun(int fd, struct mmsghdr* msgs, const uint16_t* segs, int n, SendStats* st) {
  bool waited = false;
  int pos = 0;
  while (pos < n) {
    int r = sendmmsg(fd, msgs + pos, static_cast<unsigned>(n - pos), MSG_DONTWAIT);
    if (r > 0) {
      st->sent += r;
      for (int k = pos; k < pos + r; k++) {
        st->datagrams += segs[k];
        st->bytes += static_cast<int>(msgs[k].msg_hdr.msg_iov->iov_len);
      }
      pos += r;
      continue;
    }
    const int err = r == 0 ? EAGAIN : errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == ENOBUFS) {
      if (!waited) {
        waited = true;
        WaitWritable(fd, kWriteWaitMs);
        continue;
      }
      st->Fail(err, n - pos);
      return;
    }
    st->Fail(err);
    pos++;
  }
}

}  // namespace

int SendBatch(const int32_t* fds, size_t nfds, const uint8_t* buf, size_t buflen, const int32_t* offs, const int32_t* lens,
              const uint8_t* sock_idx, const uint32_t* ips, const uint16_t* ports, int count, const int32_t* segs,
              int32_t* stats) {
  SendStats st;
  // Each entry is read once: the arrays may be views of memory another thread writes.
  const size_t n = std::min(static_cast<size_t>(count), static_cast<size_t>(kMaxBatch));
  int32_t off_of[kMaxBatch], len_of[kMaxBatch], seg_of[kMaxBatch];
  uint8_t sock_of[kMaxBatch];
  bool ok_of[kMaxBatch];
  // Stable counting sort of the valid datagrams by socket index: order[start[s]..start[s+1]).
  int start[257] = {0};
  uint16_t order[kMaxBatch];
  for (size_t i = 0; i < n; i++) {
    off_of[i] = offs[i];
    len_of[i] = lens[i];
    sock_of[i] = sock_idx[i];
    seg_of[i] = segs != nullptr ? segs[i] : 0;
    ok_of[i] = sock_of[i] < nfds && off_of[i] >= 0 && len_of[i] >= 0 &&
               static_cast<size_t>(off_of[i]) + static_cast<size_t>(len_of[i]) <= buflen && seg_of[i] >= 0 && seg_of[i] <= 0xffff;
    if (ok_of[i]) {
      start[sock_of[i] + 1]++;
    } else {
      st.Fail(EINVAL);
    }
  }
  for (int s = 0; s < 256; s++) start[s + 1] += start[s];
  int next[256];
  std::memcpy(next, start, sizeof next);
  for (size_t i = 0; i < n; i++) {
    if (ok_of[i]) order[next[sock_of[i]]++] = static_cast<uint16_t>(i);
  }

  struct mmsghdr msgs[kMaxBatch];
  struct iovec iov[kMaxBatch];
  struct sockaddr_in to[kMaxBatch];
  alignas(struct cmsghdr) char ctrl[kMaxBatch][kCtrlLen];
  uint16_t nsegs[kMaxBatch];
  const int total = start[256];
  std::memset(msgs, 0, static_cast<size_t>(total) * sizeof msgs[0]);
  for (int k = 0; k < total; k++) {
    const uint16_t i = order[k];
    std::memset(&to[k], 0, sizeof to[k]);
    to[k].sin_family = AF_INET;
    to[k].sin_addr.s_addr = htonl(ips[i]);
    to[k].sin_port = htons(ports[i]);
    iov[k].iov_base = const_cast<uint8_t*>(buf) + off_of[i];
    iov[k].iov_len = static_cast<size_t>(len_of[i]);
    msgs[k].msg_hdr.msg_name = &to[k];
    msgs[k].msg_hdr.msg_namelen = sizeof to[k];
    msgs[k].msg_hdr.msg_iov = &iov[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
    nsegs[k] = 1;
    if (seg_of[i] > 0) {
      std::memset(ctrl[k], 0, kCtrlLen);
      msgs[k].msg_hdr.msg_control = ctrl[k];
      msgs[k].msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      struct cmsghdr* c = CMSG_FIRSTHDR(&msgs[k].msg_hdr);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const uint16_t seg = static_cast<uint16_t>(seg_of[i]);
      std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
      if (len_of[i] > seg_of[i]) nsegs[k] = static_cast<uint16_t>((len_of[i] + seg_of[i] - 1) / seg_of[i]);
    }
  }
  for (int s = 0; s < 256; s++) {
    if (start[s + 1] > start[s]) SendRun(fds[s], msgs + start[s], nsegs + start[s], start[s + 1] - start[s], &st);
  }
  stats[0] = st.sent;
  stats[1] = st.failed;
  stats[2] = st.last_errno;
  stats[3] = st.datagrams;
  stats[4] = st.bytes;
  return st.sent;
}

namespace {

// udpSend(fds, buf, offs, lens, sockIdx, dstIPs, dstPorts, count, stats[, segSizes]) -> messages sent.
// With segSizes, a message with segSizes[i] > 0 carries a UDP_SEGMENT cmsg: the kernel splits it
// into datagrams of that many bytes (the last may be shorter). EIO in stats[2] means the path
// cannot segment (no checksum offload): the caller falls back to single datagrams.
// Datagram i = buf[offs[i], offs[i] + lens[i]) goes to dstIPs[i]:dstPorts[i] on fds[sockIdx[i]].
// Datagrams are grouped by socket index (order kept within a socket) and each group is one run
// of SendRun. A datagram outside buf or with sockIdx >= fds.length fails with EINVAL without a
// system call. stats = [messages sent, messages failed, last errno, datagrams sent, bytes sent].
Napi::Value UdpSend(const Napi::CallbackInfo& info) {
  Args a(info, "udpSend");
  Span<int32_t> fds, offs, lens, stats;
  Span<uint8_t> buf, sock_idx;
  Span<uint32_t> ips;
  Span<uint16_t> ports;
  int32_t count;
  if (!a.Int32s(0, "fds", &fds) || !a.Bytes(1, "buf", &buf) || !a.Int32s(2, "offs", &offs) ||
      !a.Int32s(3, "lens", &lens) || !a.Bytes(4, "sockIdx", &sock_idx) ||
      !a.Uint32s(5, "dstIPs", &ips) || !a.Uint16s(6, "dstPorts", &ports) ||
      !a.Int32(7, "count", &count) || !a.Int32s(8, "stats", &stats)) {
    return Napi::Value();
  }
  Span<int32_t> segs;
  const bool gso = a.Has(9);
  if (gso && !a.Int32s(9, "segSizes", &segs)) return Napi::Value();
  if (count < 0 || count > kMaxBatch) return a.RangeError("count", "must be in 0..256");
  const size_t n = static_cast<size_t>(count);
  if (offs.len < n) return a.RangeError("offs", "is shorter than count");
  if (lens.len < n) return a.RangeError("lens", "is shorter than count");
  if (sock_idx.len < n) return a.RangeError("sockIdx", "is shorter than count");
  if (ips.len < n) return a.RangeError("dstIPs", "is shorter than count");
  if (ports.len < n) return a.RangeError("dstPorts", "is shorter than count");
  if (stats.len < 5) return a.RangeError("stats", "must have at least 5 elements");
  if (gso && segs.len < n) return a.RangeError("segSizes", "is shorter than count");

  return Int(a.env(), SendBatch(fds.data, fds.len, buf.data, buf.len, offs.data, lens.data, sock_idx.data, ips.data,
                                 ports.data, count, gso ? segs.data : nullptr, stats.data));
}

}  // namespace

void RegisterUdp(Napi::Env env, Napi::Object exports, Napi::Object /*constants*/) {
  exports.Set("udpOpen", Napi::Function::New(env, UdpOpen, "udpOpen"));
  exports.Set("udpLocalPort", Napi::Function::New(env, UdpLocalPort, "udpLocalPort"));
  exports.Set("udpRecv", Napi::Function::New(env, UdpRecv, "udpRecv"));
  exports.Set("udpSend", Napi::Function::New(env, UdpSend, "udpSend"));
}

}  // namespace tulle
