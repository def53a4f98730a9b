// Readiness and wake-ups: poll over a small fd set, and eventfds that another thread of the same
// process signals to wake a worker blocked in poll (worker.terminate() cannot interrupt a native
// call; the eventfd can).
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>

#include "addon.h"
#include "args.h"
#include "batch.h"

namespace tulle {
namespace {

// poll(fds, revents, nfds, timeoutMs) -> ready count | 0 on timeout or EINTR | -errno.
// Waits for POLLIN on fds[0..nfds); revents[i] receives each fd's revents (0 when not ready).
Napi::Value Poll(const Napi::CallbackInfo& info) {
  Args a(info, "poll");
  Span<int32_t> fds, revents;
  int32_t nfds, timeout_ms;
  if (!a.Int32s(0, "fds", &fds) || !a.Int32s(1, "revents", &revents) ||
      !a.Int32(2, "nfds", &nfds) || !a.Int32(3, "timeoutMs", &timeout_ms)) {
    return Napi::Value();
  }
  if (nfds < 0 || nfds > kMaxPollFds) return a.RangeError("nfds", "must be in 0..64");
  if (fds.len < static_cast<size_t>(nfds)) return a.RangeError("fds", "is shorter than nfds");
  if (revents.len < static_cast<size_t>(nfds)) return a.RangeError("revents", "is shorter than nfds");
  if (timeout_ms < -1) return a.RangeError("timeoutMs", "must be -1 or more");

  struct pollfd pfds[kMaxPollFds];
  for (int i = 0; i < nfds; i++) pfds[i] = {fds.data[i], POLLIN, 0};
  int n = poll(pfds, static_cast<nfds_t>(nfds), timeout_ms);
  if (n < 0) {
    int err = errno;
    for (int i = 0; i < nfds; i++) revents.data[i] = 0;
    return Int(a.env(), err == EINTR ? 0 : -err);
  }
  for (int i = 0; i < nfds; i++) revents.data[i] = pfds[i].revents;
  return Int(a.env(), n);
}

// eventfdOpen() -> fd | -errno. Non-blocking, close-on-exec, owned by the calling environment.
Napi::Value EventfdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UniqueFd fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!fd.valid()) return Int(env, NegErrno());
  return Int(env, State(env).fds.Adopt(fd));
}

// socketPair(fds) -> 0 | -errno. A connected pair of AF_UNIX datagram sockets, non-blocking and
// close-on-exec, owned by the calling environment, in fds[0] and fds[1]: each read() takes one
// whole datagram, as from a TUN queue (the rehearsal uses one as a stand-in TUN device).
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Args a(info, "socketPair");
  Span<int32_t> out;
  if (!a.Int32s(0, "fds", &out)) return Napi::Value();
  if (out.len < 2) return a.RangeError("fds", "must have at least 2 elements");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) return Int(a.env(), NegErrno());
  UniqueFd f0(sv[0]), f1(sv[1]);
  out.data[0] = State(a.env()).fds.Adopt(f0);
  out.data[1] = State(a.env()).fds.Adopt(f1);
  return Int(a.env(), 0);
}

// eventfdSignal(fd) -> 0 | -errno. Makes the eventfd readable; callable from any thread.
Napi::Value EventfdSignal(const Napi::CallbackInfo& info) {
  Args a(info, "eventfdSignal");
  int32_t fd;
  if (!a.Int32(0, "fd", &fd)) return Napi::Value();
  const uint64_t one = 1;
  for (;;) {
    ssize_t r = write(fd, &one, sizeof one);
    if (r == static_cast<ssize_t>(sizeof one)) return Int(a.env(), 0);
    if (r >= 0) return Int(a.env(), -EINVAL);  // not an eventfd
    if (errno == EINTR) continue;
    // EAGAIN means the counter is saturated: the fd is readable already.
    return Int(a.env(), errno == EAGAIN ? 0 : NegErrno());
  }
}

// eventfdDrain(fd) -> 0 | -errno. Reads until EAGAIN so the eventfd is no longer readable.
Napi::Value EventfdDrain(const Napi::CallbackInfo& info) {
  Args a(info, "eventfdDrain");
  int32_t fd;
  if (!a.Int32(0, "fd", &fd)) return Napi::Value();
  return Int(a.env(), DrainEventfd(fd));
}

}  // namespace

int DrainEventfd(int fd) {
  // One read takes an eventfd's whole count (it is not a semaphore one), so the next finds
  // nothing unless another signal came in between. Something that keeps answering (/dev/zero, a
  // blocking fd) is not a non-blocking eventfd, and is not read without end.
  uint64_t count;
  for (int reads = 0; reads < 64;) {
    ssize_t r = read(fd, &count, sizeof count);
    if (r == static_cast<ssize_t>(sizeof count)) {
      reads++;
      continue;
    }
    if (r >= 0) return -EINVAL;  // not an eventfd
    if (errno == EINTR) continue;
    return errno == EAGAIN ? 0 : NegErrno();
  }
  return -EINVAL;
}

void RegisterPoll(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("poll", Napi::Function::New(env, Poll, "poll"));
  exports.Set("eventfdOpen", Napi::Function::New(env, EventfdOpen, "eventfdOpen"));
  exports.Set("socketPair", Napi::Function::New(env, SocketPair, "socketPair"));
  exports.Set("eventfdSignal", Napi::Function::New(env, EventfdSignal, "eventfdSignal"));
  exports.Set("eventfdDrain", Napi::Function::New(env, EventfdDrain, "eventfdDrain"));
  SetConstant(constants, "MAX_POLL_FDS", kMaxPollFds);
  SetConstant(constants, "POLLIN", POLLIN);
  SetConstant(constants, "POLLERR", POLLERR);
  SetConstant(constants, "POLLHUP", POLLHUP);
  SetConstant(constants, "POLLNVAL", POLLNVAL);
}

}  // namespace tulle
