// A forwarding loop's I/O port: the loop's fds and the typed arrays it keeps for its whole life,
// bound once, so that each call of the loop passes a handle and a few numbers instead of up to
// ten typed arrays (unpacking those costs more than the system call for a single small packet),
// and so that one call can wait and then read what the wait reported.
//
//   portOpen(fds, sendFds, txMem, txSlot, tunLens, rxMem, rxSlot, rxLens, rxSrcIPs, rxSrcPorts,
//            rxSegs | undefined, stats, state) -> handle
//   portBindSend(h, k, mem, offs, lens, sockIdx, dstIPs, dstPorts, segSizes | undefined)
//   portBindWrite(h, k, offs, lens)
//   portWait(h, timeoutMs, tunMax, tunHeadroom, tunBudget, rxMax) -> ready | -errno
//   portRead(h, max, headroom, budget) -> packets | -errno
//   portRecv(h, max) -> messages | -errno
//   portSend(h, k, count, gso) -> messages sent
//   portWrite(h, k, at, count) -> packets written
//   portClose(h)
//
// fds = [TUN queue, receive socket, wake eventfd]; mem 0 is txMem, 1 is rxMem; k picks one of
// kBatches bound send or write batches. The port holds a reference to every bound array, so none
// is collected while bound; callers must not transfer (detach) a bound buffer. Every count is
// checked against what was bound, and every packet's offset and length against its buffer, so a
// wrong number fails (RangeError, or EINVAL in stats) instead of touching other memory.
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "addon.h"
#include "args.h"
#include "batch.h"
#include "port.h"

namespace tulle {

namespace {

constexpr int kBatches = 2;

// State words portWait fills: the three fds' revents, then the packets read from the TUN queue
// and the messages received (each 0 when that fd was not ready, or -errno).
enum StateWord { kRevTun, kRevRx, kRevWake, kTunCount, kRxCount, kStateLen };

template <typename T>
struct View {
  T* data = nullptr;
  size_t len = 0;
};

struct SendBind {
  bool bound = false;
  int mem = 0;
  int cap = 0;
  View<int32_t> offs, lens, segs;
  View<uint8_t> sock;
  View<uint32_t> ips;
  View<uint16_t> ports;
};

struct WriteBind {
  bool bound = false;
  int cap = 0;
  View<int32_t> offs, lens;
};

}  // namespace

struct Port {
  int tun_fd = -1, rx_fd = -1, wake_fd = -1;
  View<int32_t> send_fds;
  View<uint8_t> mem[2];
  int tx_slot = 0, rx_slot = 0;
  int tun_cap = 0, rx_cap = 0;
  View<int32_t> tun_lens, rx_lens, rx_segs, stats, state;
  View<uint32_t> rx_ips;
  View<uint16_t> rx_ports;
  SendBind sends[kBatches];
  WriteBind writes[kBatches];
  std::vector<napi_ref> refs;
};

PortRegistry::~PortRegistry() {
  // The environment is going away and takes its references with it.
  for (Port* p : ports_) delete p;
}

int PortRegistry::Add(Port* p) {
  for (size_t i = 0; i < ports_.size(); i++) {
    if (ports_[i] == nullptr) {
      ports_[i] = p;
      return static_cast<int>(i);
    }
  }
  ports_.push_back(p);
  return static_cast<int>(ports_.size() - 1);
}

Port* PortRegistry::Get(int h) const {
  return h >= 0 && static_cast<size_t>(h) < ports_.size() ? ports_[static_cast<size_t>(h)] : nullptr;
}

Port* PortRegistry::Take(int h) {
  Port* p = Get(h);
  if (p != nullptr) ports_[static_cast<size_t>(h)] = nullptr;
  return p;
}

namespace {

// Reads a typed array argument of the given type into view and keeps it alive in port->refs.
template <typename T>
bool Keep(const Args& a, const Napi::CallbackInfo& info, size_t i, const char* name, Port* port, View<T>* view,
          bool (Args::*get)(size_t, const char*, Span<T>*) const) {
  Span<T> s;
  if (!(a.*get)(i, name, &s)) return false;
  napi_ref ref;
  if (napi_create_reference(info.Env(), info[i], 1, &ref) != napi_ok) {
    a.RangeError(name, "cannot be referenced");
    return false;
  }
  port->refs.push_back(ref);
  view->data = s.data;
  view->len = s.len;
  return true;
}

void Unref(napi_env env, Port* p) {
  for (napi_ref r : p->refs) napi_delete_reference(env, r);
  p->refs.clear();
}

Port* Lookup(const Args& a, int32_t h) {
  Port* p = State(a.env()).ports.Get(h);
  if (p == nullptr) a.RangeError("port", "is not an open port of this thread");
  return p;
}

// A bound batch capacity: at most kMaxBatch.
int Cap(size_t n) { return static_cast<int>(std::min(n, static_cast<size_t>(kMaxBatch))); }

Napi::Value PortOpen(const Napi::CallbackInfo& info) {
  Args a(info, "portOpen");
  auto* p = new Port();
  Span<int32_t> fds;
  bool ok = a.Int32s(0, "fds", &fds) && Keep(a, info, 1, "sendFds", p, &p->send_fds, &Args::Int32s) &&
            Keep(a, info, 2, "txMem", p, &p->mem[0], &Args::Bytes) && a.Int32(3, "txSlot", &p->tx_slot) &&
            Keep(a, info, 4, "tunLens", p, &p->tun_lens, &Args::Int32s) &&
            Keep(a, info, 5, "rxMem", p, &p->mem[1], &Args::Bytes) && a.Int32(6, "rxSlot", &p->rx_slot) &&
            Keep(a, info, 7, "rxLens", p, &p->rx_lens, &Args::Int32s) &&
            Keep(a, info, 8, "rxSrcIPs", p, &p->rx_ips, &Args::Uint32s) &&
            Keep(a, info, 9, "rxSrcPorts", p, &p->rx_ports, &Args::Uint16s) &&
            (!a.Has(10) || Keep(a, info, 10, "rxSegs", p, &p->rx_segs, &Args::Int32s)) &&
            Keep(a, info, 11, "stats", p, &p->stats, &Args::Int32s) &&
            Keep(a, info, 12, "state", p, &p->state, &Args::Int32s);
  const char* bad = nullptr;
  const char* why = nullptr;
  if (ok) {
    if (fds.len != 3) bad = "fds", why = "must hold 3 fds (TUN queue, receive socket, wake eventfd)";
    else if (p->send_fds.len < 1 || p->send_fds.len > 256) bad = "sendFds", why = "must hold 1..256 fds";
    else if (p->tx_slot < 1) bad = "txSlot", why = "must be positive";
    else if (p->rx_slot < 1) bad = "rxSlot", why = "must be positive";
    else if (p->stats.len < 5) bad = "stats", why = "must have at least 5 elements";
    else if (p->state.len < kStateLen) bad = "state", why = "must have at least PORT_STATE_LEN elements";
  }
  if (ok && bad == nullptr) {
    p->tun_fd = fds.data[0];
    p->rx_fd = fds.data[1];
    p->wake_fd = fds.data[2];
    p->tun_cap = Cap(std::min(p->tun_lens.len, p->mem[0].len / static_cast<size_t>(p->tx_slot)));
    size_t rx = std::min({p->rx_lens.len, p->rx_ips.len, p->rx_ports.len, p->mem[1].len / static_cast<size_t>(p->rx_slot)});
    if (p->rx_segs.data != nullptr) rx = std::min(rx, p->rx_segs.len);
    p->rx_cap = Cap(rx);
    if (p->tun_cap < 1) bad = "txMem", why = "has no room for one TUN slot";
    else if (p->rx_cap < 1) bad = "rxMem", why = "has no room for one receive slot";
  }
  if (!ok || bad != nullptr) {
    Unref(a.env(), p);
    delete p;
    if (bad != nullptr) return a.RangeError(bad, why);
    return Napi::Value();
  }
  return Int(a.env(), State(a.env()).ports.Add(p));
}

bool Which(const Args& a, int32_t k) {
  if (k >= 0 && k < kBatches) return true;
  a.RangeError("k", "must be 0 or 1");
  return false;
}

Napi::Value PortBindSend(const Napi::CallbackInfo& info) {
  Args a(info, "portBindSend");
  int32_t h, k, mem;
  if (!a.Int32(0, "port", &h) || !a.Int32(1, "k", &k) || !a.Int32(2, "mem", &mem)) return Napi::Value();
  Port* p = Lookup(a, h);
  if (p == nullptr || !Which(a, k)) return Napi::Value();
  if (mem != 0 && mem != 1) return a.RangeError("mem", "must be 0 (txMem) or 1 (rxMem)");
  SendBind b;
  b.mem = mem;
  if (!Keep(a, info, 3, "offs", p, &b.offs, &Args::Int32s) || !Keep(a, info, 4, "lens", p, &b.lens, &Args::Int32s) ||
      !Keep(a, info, 5, "sockIdx", p, &b.sock, &Args::Bytes) || !Keep(a, info, 6, "dstIPs", p, &b.ips, &Args::Uint32s) ||
      !Keep(a, info, 7, "dstPorts", p, &b.ports, &Args::Uint16s) ||
      (a.Has(8) && !Keep(a, info, 8, "segSizes", p, &b.segs, &Args::Int32s))) {
    return Napi::Value();
  }
  size_t cap = std::min({b.offs.len, b.lens.len, b.sock.len, b.ips.len, b.ports.len});
  if (b.segs.data != nullptr) cap = std::min(cap, b.segs.len);
  b.cap = Cap(cap);
  b.bound = true;
  p->sends[k] = b;
  return Int(a.env(), 0);
}

Napi::Value PortBindWrite(const Napi::CallbackInfo& info) {
  Args a(info, "portBindWrite");
  int32_t h, k;
  if (!a.Int32(0, "port", &h) || !a.Int32(1, "k", &k)) return Napi::Value();
  Port* p = Lookup(a, h);
  if (p == nullptr || !Which(a, k)) return Napi::Value();
  WriteBind b;
  if (!Keep(a, info, 2, "offs", p, &b.offs, &Args::Int32s) || !Keep(a, info, 3, "lens", p, &b.lens, &Args::Int32s)) {
    return Napi::Value();
  }
  b.cap = static_cast<int>(std::min(b.offs.len, b.lens.len));
  b.bound = true;
  p->writes[k] = b;
  return Int(a.env(), 0);
}

bool TunArgs(const Args& a, const Port* p, int32_t max, int32_t headroom, int32_t budget) {
  if (max < 0 || max > p->tun_cap) {
    a.RangeError("tunMax", "exceeds the bound TUN slots");
    return false;
  }
  if (headroom < 0 || headroom >= p->tx_slot) {
    a.RangeError("headroom", "must be in 0..txSlot-1");
    return false;
  }
  if (budget < 1) {
    a.RangeError("budget", "must be positive");
    return false;
  }
  return true;
}

int Recv(Port* p, int max) {
  return RecvBatch(p->rx_fd, p->mem[1].data, p->rx_slot, 0, p->rx_lens.data, p->rx_ips.data, p->rx_ports.data, max,
                   p->rx_segs.data);
}

void Drain(int fd) {
  uint64_t count;
  for (;;) {
    ssize_t r = read(fd, &count, sizeof count);
    if (r == static_cast<ssize_t>(sizeof count) || (r < 0 && errno == EINTR)) continue;
    return;
  }
}

// Waits for the fds, drains the wake eventfd, then reads the TUN queue (up to tunMax packets,
// tunBudget bytes) and the receive socket (up to rxMax messages) if poll reported them readable.
Napi::Value PortWait(const Napi::CallbackInfo& info) {
  Args a(info, "portWait");
  int32_t h, timeout_ms, tun_max, headroom, budget, rx_max;
  if (!a.Int32(0, "port", &h) || !a.Int32(1, "timeoutMs", &timeout_ms) || !a.Int32(2, "tunMax", &tun_max) ||
      !a.Int32(3, "tunHeadroom", &headroom) || !a.Int32(4, "tunBudget", &budget) || !a.Int32(5, "rxMax", &rx_max)) {
    return Napi::Value();
  }
  Port* p = Lookup(a, h);
  if (p == nullptr || !TunArgs(a, p, tun_max, headroom, budget)) return Napi::Value();
  if (rx_max < 0 || rx_max > p->rx_cap) return a.RangeError("rxMax", "exceeds the bound receive slots");
  if (timeout_ms < -1) return a.RangeError("timeoutMs", "must be -1 or more");
  int32_t* st = p->state.data;
  struct pollfd pfds[3] = {{p->tun_fd, POLLIN, 0}, {p->rx_fd, POLLIN, 0}, {p->wake_fd, POLLIN, 0}};
  const int n = poll(pfds, 3, timeout_ms);
  if (n <= 0) {
    for (int i = 0; i < kStateLen; i++) st[i] = 0;
    return Int(a.env(), n == 0 || errno == EINTR ? 0 : NegErrno());
  }
  st[kRevTun] = pfds[0].revents;
  st[kRevRx] = pfds[1].revents;
  st[kRevWake] = pfds[2].revents;
  if (pfds[2].revents != 0) Drain(p->wake_fd);
  st[kTunCount] = pfds[0].revents == POLLIN && tun_max > 0
                      ? ReadBatch(p->tun_fd, p->mem[0].data, p->tx_slot, headroom, p->tun_lens.data, tun_max, budget)
                      : 0;
  st[kRxCount] = pfds[1].revents == POLLIN && rx_max > 0 ? Recv(p, rx_max) : 0;
  return Int(a.env(), n);
}

Napi::Value PortRead(const Napi::CallbackInfo& info) {
  Args a(info, "portRead");
  int32_t h, max, headroom, budget;
  if (!a.Int32(0, "port", &h) || !a.Int32(1, "max", &max) || !a.Int32(2, "headroom", &headroom) ||
      !a.Int32(3, "budget", &budget)) {
    return Napi::Value();
  }
  Port* p = Lookup(a, h);
  if (p == nullptr || !TunArgs(a, p, max, headroom, budget)) return Napi::Value();
  if (max == 0) return Int(a.env(), 0);
  return Int(a.env(), ReadBatch(p->tun_fd, p->mem[0].data, p->tx_slot, headroom, p->tun_lens.data, max, budget));
}

Napi::Value PortRecv(const Napi::CallbackInfo& info) {
  Args a(info, "portRecv");
  int32_t h, max;
  if (!a.Int32(0, "port", &h) || !a.Int32(1, "max", &max)) return Napi::Value();
  Port* p = Lookup(a, h);
  if (p == nullptr) return Napi::Value();
  if (max < 0 || max > p->rx_cap) return a.RangeError("max", "exceeds the bound receive slots");
  return Int(a.env(), max == 0 ? 0 : Recv(p, max));
}

Napi::Value PortSend(const Napi::CallbackInfo& info) {
  Args a(info, "portSend");
  int32_t h, k, count;
  bool gso;
  if (!a.Int32(0, "port", &h) || !a.Int32(1, "k", &k) || !a.Int32(2, "count", &count) || !a.Bool(3, "gso", &gso)) {
    return Napi::Value();
  }
  Port* p = Lookup(a, h);
  if (p == nullptr || !Which(a, k)) return Napi::Value();
  const SendBind& b = p->sends[k];
  if (!b.bound) return a.RangeError("k", "names no bound send batch");
  if (count < 0 || count > b.cap) return a.RangeError("count", "exceeds the bound send batch");
  if (gso && b.segs.data == nullptr) return a.RangeError("gso", "needs a batch bound with segSizes");
  const View<uint8_t>& m = p->mem[b.mem];
  return Int(a.env(), SendBatch(p->send_fds.data, p->send_fds.len, m.data, m.len, b.offs.data, b.lens.data, b.sock.data,
                                b.ips.data, b.ports.data, count, gso ? b.segs.data : nullptr, p->stats.data));
}

Napi::Value PortWrite(const Napi::CallbackInfo& info) {
  Args a(info, "portWrite");
  int32_t h, k, at, count;
  if (!a.Int32(0, "port", &h) || !a.Int32(1, "k", &k) || !a.Int32(2, "at", &at) || !a.Int32(3, "count", &count)) {
    return Napi::Value();
  }
  Port* p = Lookup(a, h);
  if (p == nullptr || !Which(a, k)) return Napi::Value();
  const WriteBind& b = p->writes[k];
  if (!b.bound) return a.RangeError("k", "names no bound write batch");
  if (count < 0 || count > kMaxBatch) return a.RangeError("count", "must be in 0..256");
  if (at < 0 || at > b.cap - count) return a.RangeError("at", "puts the batch outside the bound write arrays");
  return Int(a.env(), WriteBatch(p->tun_fd, p->mem[1].data, p->mem[1].len, b.offs.data + at, b.lens.data + at, count,
                                 p->stats.data));
}

Napi::Value PortClose(const Napi::CallbackInfo& info) {
  Args a(info, "portClose");
  int32_t h;
  if (!a.Int32(0, "port", &h)) return Napi::Value();
  Port* p = State(a.env()).ports.Take(h);
  if (p == nullptr) return Int(a.env(), -EBADF);
  Unref(a.env(), p);
  delete p;
  return Int(a.env(), 0);
}

}  // namespace

void RegisterPort(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("portOpen", Napi::Function::New(env, PortOpen, "portOpen"));
  exports.Set("portBindSend", Napi::Function::New(env, PortBindSend, "portBindSend"));
  exports.Set("portBindWrite", Napi::Function::New(env, PortBindWrite, "portBindWrite"));
  exports.Set("portWait", Napi::Function::New(env, PortWait, "portWait"));
  exports.Set("portRead", Napi::Function::New(env, PortRead, "portRead"));
  exports.Set("portRecv", Napi::Function::New(env, PortRecv, "portRecv"));
  exports.Set("portSend", Napi::Function::New(env, PortSend, "portSend"));
  exports.Set("portWrite", Napi::Function::New(env, PortWrite, "portWrite"));
  exports.Set("portClose", Napi::Function::New(env, PortClose, "portClose"));
  SetConstant(constants, "PORT_STATE_LEN", kStateLen);
}

}  // namespace tulle
