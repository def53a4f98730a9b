// A forwarding loop's I/O port: the loop's fds and the typed arrays it keeps for its whole life,
// bound once, so that each call of the loop passes a handle and a few numbers instead of up to
// ten typed arrays (unpacked per call, and past six arguments with an allocation), and so that one
// call can wait and then read what the wait reported. Measured in a perf profile of two workers
// forwarding pings: user space fell from 31 % to 23 % of their samples.
//
//   portOpen(arena, fds, sendFds, txMem, txSlot, tunLens, rxMem, rxSlot, rxLens, rxSrcIPs,
//            rxSrcPorts, rxSegs | undefined, stats, state) -> handle
//   portBindSend(h, k, mem, offs, lens, sockIdx, dstIPs, dstPorts, segSizes | undefined)
//   portBindWrite(h, k, offs, lens)
//   portWait(h, timeoutMs, tunMax, tunHeadroom, tunBudget, rxMax) -> ready | -errno
//   portRead(h, max, headroom, budget) -> packets | -errno
//   portRecv(h, max) -> messages | -errno
//   portSend(h, k, count, gso) -> messages sent
//   portWrite(h, k, at, count) -> packets written
//   portClose(h)
//
// fds = [TUN queue, receive socket, wake eventfd] and sendFds are copied; mem 0 is txMem, 1 is
// rxMem; k picks one of kBatches bound send or write batches. Every bound array must be a view of
// `arena`, one fixed-length (not resizable) ArrayBuffer that the port holds a reference to until
// portClose or the environment's end. Each call first checks that the arena is still attached: a
// transferred arena makes every call fail with a RangeError instead of reaching memory the loop
// no longer owns. Every count is checked against what was bound, and every packet's offset and
// length against its buffer, so a wrong number fails (RangeError, or EINVAL in stats) instead of
// touching other memory. Handles are never reused within a thread.
#include <errno.h>
#include <poll.h>

#include <algorithm>
#include <climits>
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
  napi_ref arena = nullptr;
  // Where the arena's memory was when the views were bound, and its length then.
  void* arena_data = nullptr;
  size_t arena_len = 0;
  int tun_fd = -1, rx_fd = -1, wake_fd = -1;
  std::vector<int32_t> send_fds;
  View<uint8_t> mem[2];
  int tx_slot = 0, rx_slot = 0;
  int tun_cap = 0, rx_cap = 0;
  View<int32_t> tun_lens, rx_lens, rx_segs, stats, state;
  View<uint32_t> rx_ips;
  View<uint16_t> rx_ports;
  SendBind sends[kBatches];
  WriteBind writes[kBatches];
};

PortRegistry::~PortRegistry() {
  // The environment is going away and takes its references with it.
  for (Port* p : ports_) delete p;
}

int PortRegistry::Add(Port* p) {
  // A new handle every time: a stale handle then finds nothing instead of another loop's port.
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

// Reads a typed array argument into view; it must be a view of the port's arena.
template <typename T>
bool Keep(const Args& a, const Napi::CallbackInfo& info, size_t i, const char* name, napi_value arena, View<T>* view,
          bool (Args::*get)(size_t, const char*, Span<T>*) const) {
  Span<T> s;
  if (!(a.*get)(i, name, &s)) return false;
  napi_value buffer;
  bool same = false;
  if (napi_get_typedarray_info(info.Env(), info[i], nullptr, nullptr, nullptr, &buffer, nullptr) != napi_ok ||
      napi_strict_equals(info.Env(), buffer, arena, &same) != napi_ok || !same) {
    a.RangeError(name, "is not a view of the port's arena");
    return false;
  }
  view->data = s.data;
  view->len = s.len;
  return true;
}

void Free(napi_env env, Port* p) {
  if (p->arena != nullptr) napi_delete_reference(env, p->arena);
  delete p;
}

// The port's arena, or null (with a RangeError pending) if it was detached.
bool Attached(const Args& a, const Port* p) {
  napi_value arena;
  bool detached = true;
  if (napi_get_reference_value(a.env(), p->arena, &arena) != napi_ok || arena == nullptr ||
      napi_is_detached_arraybuffer(a.env(), arena, &detached) != napi_ok || detached) {
    a.RangeError("port", "has lost its arena (the ArrayBuffer was detached)");
    return false;
  }
  // The views were bound at their place in the arena: it must still be that memory, whole.
  void* data = nullptr;
  size_t len = 0;
  if (napi_get_arraybuffer_info(a.env(), arena, &data, &len) != napi_ok || data != p->arena_data || len < p->arena_len) {
    a.RangeError("port", "has lost its arena (the ArrayBuffer was moved or shrunk)");
    return false;
  }
  return true;
}

// The open port h of this thread with its arena attached, or null with a RangeError pending.
Port* Lookup(const Args& a, int32_t h) {
  Port* p = State(a.env()).ports.Get(h);
  if (p == nullptr) {
    a.RangeError("port", "is not an open port of this thread");
    return nullptr;
  }
  return Attached(a, p) ? p : nullptr;
}

// A bound batch capacity: at most kMaxBatch.
int Cap(size_t n) { return static_cast<int>(std::min(n, static_cast<size_t>(kMaxBatch))); }

Napi::Value PortOpen(const Napi::CallbackInfo& info) {
  Args a(info, "portOpen");
  Napi::Env env = a.env();
  napi_value arena = info[0];
  bool is_ab = false, resizable = true;
  napi_value prop;
  if (napi_is_arraybuffer(env, arena, &is_ab) != napi_ok || !is_ab) {
    Napi::TypeError::New(env, "portOpen: arena must be an ArrayBuffer").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  if (napi_get_named_property(env, arena, "resizable", &prop) != napi_ok) {
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return Napi::Value();  // a throwing getter
    resizable = false;
  } else if (napi_get_value_bool(env, prop, &resizable) != napi_ok) {
    resizable = false;  // engines without resizable buffers have no such property
  }
  if (resizable) return a.RangeError("arena", "must not be resizable");
  auto* p = new Port();
  Span<int32_t> fds, send_fds;
  bool ok = a.Int32s(1, "fds", &fds) && a.Int32s(2, "sendFds", &send_fds) &&
            Keep(a, info, 3, "txMem", arena, &p->mem[0], &Args::Bytes) && a.Int32(4, "txSlot", &p->tx_slot) &&
            Keep(a, info, 5, "tunLens", arena, &p->tun_lens, &Args::Int32s) &&
            Keep(a, info, 6, "rxMem", arena, &p->mem[1], &Args::Bytes) && a.Int32(7, "rxSlot", &p->rx_slot) &&
            Keep(a, info, 8, "rxLens", arena, &p->rx_lens, &Args::Int32s) &&
            Keep(a, info, 9, "rxSrcIPs", arena, &p->rx_ips, &Args::Uint32s) &&
            Keep(a, info, 10, "rxSrcPorts", arena, &p->rx_ports, &Args::Uint16s) &&
            (!a.Has(11) || Keep(a, info, 11, "rxSegs", arena, &p->rx_segs, &Args::Int32s)) &&
            Keep(a, info, 12, "stats", arena, &p->stats, &Args::Int32s) &&
            Keep(a, info, 13, "state", arena, &p->state, &Args::Int32s);
  const char* bad = nullptr;
  const char* why = nullptr;
  if (ok) {
    const size_t rx_slots = p->rx_slot < 1 ? 0 : p->mem[1].len / static_cast<size_t>(p->rx_slot);
    if (fds.len != 3) bad = "fds", why = "must hold 3 fds (TUN queue, receive socket, wake eventfd)";
    else if (send_fds.len < 1 || send_fds.len > 256) bad = "sendFds", why = "must hold 1..256 fds";
    else if (p->tx_slot < 1) bad = "txSlot", why = "must be positive";
    else if (p->rx_slot < 1) bad = "rxSlot", why = "must be positive";
    else if (p->mem[0].len < static_cast<size_t>(p->tx_slot)) bad = "txMem", why = "has no room for one TUN slot";
    else if (p->tun_lens.len < 1) bad = "tunLens", why = "must not be empty";
    else if (rx_slots < 1) bad = "rxMem", why = "has no room for one receive slot";
    else if (p->rx_lens.len < 1) bad = "rxLens", why = "must not be empty";
    else if (p->rx_ips.len < 1) bad = "rxSrcIPs", why = "must not be empty";
    else if (p->rx_ports.len < 1) bad = "rxSrcPorts", why = "must not be empty";
    else if (p->rx_segs.data != nullptr && p->rx_segs.len < 1) bad = "rxSegs", why = "must not be empty";
    else if (p->stats.len < 5) bad = "stats", why = "must have at least 5 elements";
    else if (p->state.len < kStateLen) bad = "state", why = "must have at least PORT_STATE_LEN elements";
  }
  if (!ok || bad != nullptr) {
    delete p;
    return bad != nullptr ? a.RangeError(bad, why) : Napi::Value();
  }
  p->tun_fd = fds.data[0];
  p->rx_fd = fds.data[1];
  p->wake_fd = fds.data[2];
  p->send_fds.assign(send_fds.data, send_fds.data + send_fds.len);
  // Batches are as long as the shortest of their arrays, and at most kMaxBatch.
  p->tun_cap = Cap(std::min(p->tun_lens.len, p->mem[0].len / static_cast<size_t>(p->tx_slot)));
  size_t rx = std::min({p->rx_lens.len, p->rx_ips.len, p->rx_ports.len, p->mem[1].len / static_cast<size_t>(p->rx_slot)});
  if (p->rx_segs.data != nullptr) rx = std::min(rx, p->rx_segs.len);
  p->rx_cap = Cap(rx);
  if (napi_get_arraybuffer_info(env, arena, &p->arena_data, &p->arena_len) != napi_ok ||
      napi_create_reference(env, arena, 1, &p->arena) != napi_ok) {
    delete p;
    return a.RangeError("arena", "cannot be referenced");
  }
  return Int(env, State(env).ports.Add(p));
}

bool Which(const Args& a, int32_t k) {
  if (k >= 0 && k < kBatches) return true;
  a.RangeError("k", "must be 0 or 1");
  return false;
}

// The port's arena as a value (the caller has checked it is attached).
napi_value ArenaOf(const Args& a, const Port* p) {
  napi_value arena = nullptr;
  napi_get_reference_value(a.env(), p->arena, &arena);
  return arena;
}

Napi::Value PortBindSend(const Napi::CallbackInfo& info) {
  Args a(info, "portBindSend");
  int32_t h, k, mem;
  if (!a.Int32(0, "port", &h) || !a.Int32(1, "k", &k) || !a.Int32(2, "mem", &mem)) return Napi::Value();
  Port* p = Lookup(a, h);
  if (p == nullptr || !Which(a, k)) return Napi::Value();
  if (mem != 0 && mem != 1) return a.RangeError("mem", "must be 0 (txMem) or 1 (rxMem)");
  napi_value arena = ArenaOf(a, p);
  SendBind b;
  b.mem = mem;
  if (!Keep(a, info, 3, "offs", arena, &b.offs, &Args::Int32s) || !Keep(a, info, 4, "lens", arena, &b.lens, &Args::Int32s) ||
      !Keep(a, info, 5, "sockIdx", arena, &b.sock, &Args::Bytes) ||
      !Keep(a, info, 6, "dstIPs", arena, &b.ips, &Args::Uint32s) ||
      !Keep(a, info, 7, "dstPorts", arena, &b.ports, &Args::Uint16s) ||
      (a.Has(8) && !Keep(a, info, 8, "segSizes", arena, &b.segs, &Args::Int32s))) {
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
  napi_value arena = ArenaOf(a, p);
  WriteBind b;
  if (!Keep(a, info, 2, "offs", arena, &b.offs, &Args::Int32s) || !Keep(a, info, 3, "lens", arena, &b.lens, &Args::Int32s)) {
    return Napi::Value();
  }
  b.cap = static_cast<int>(std::min({b.offs.len, b.lens.len, static_cast<size_t>(INT32_MAX)}));
  b.bound = true;
  p->writes[k] = b;
  return Int(a.env(), 0);
}

// Checks a TUN read's max, headroom and byte budget, naming the caller's arguments.
bool TunArgs(const Args& a, const Port* p, int32_t max, const char* max_name, int32_t headroom, const char* headroom_name,
             int32_t budget, const char* budget_name) {
  if (max < 0 || max > p->tun_cap) {
    a.RangeError(max_name, "exceeds the bound TUN slots");
    return false;
  }
  if (headroom < 0 || headroom >= p->tx_slot) {
    a.RangeError(headroom_name, "must be in 0..txSlot-1");
    return false;
  }
  if (budget < 1) {
    a.RangeError(budget_name, "must be positive");
    return false;
  }
  return true;
}

int Recv(Port* p, int max) {
  return RecvBatch(p->rx_fd, p->mem[1].data, p->rx_slot, 0, p->rx_lens.data, p->rx_ips.data, p->rx_ports.data, max,
                   p->rx_segs.data);
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
  if (p == nullptr || !TunArgs(a, p, tun_max, "tunMax", headroom, "tunHeadroom", budget, "tunBudget")) return Napi::Value();
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
  if (pfds[2].revents != 0) DrainEventfd(p->wake_fd);
  // A broken fd ends the loop: read nothing then, so nothing read is dropped with it.
  const bool broken = ((pfds[0].revents | pfds[1].revents) & (POLLERR | POLLHUP | POLLNVAL)) != 0;
  st[kTunCount] = !broken && pfds[0].revents == POLLIN && tun_max > 0
                      ? ReadBatch(p->tun_fd, p->mem[0].data, p->tx_slot, headroom, p->tun_lens.data, tun_max, budget)
                      : 0;
  st[kRxCount] = !broken && pfds[1].revents == POLLIN && rx_max > 0 ? Recv(p, rx_max) : 0;
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
  if (p == nullptr || !TunArgs(a, p, max, "max", headroom, "headroom", budget, "budget")) return Napi::Value();
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
  return Int(a.env(), SendBatch(p->send_fds.data(), p->send_fds.size(), m.data, m.len, b.offs.data, b.lens.data, b.sock.data,
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
  Free(a.env(), p);
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
