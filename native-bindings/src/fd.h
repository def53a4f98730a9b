// File descriptors owned by one Node-API environment (the main thread or one worker).
//
// Every fd the addon opens is registered in the registry of the environment that opened it. The
// registry lives in that environment's instance data (AddonState); an environment cleanup hook
// destroys it when the thread exits or is terminated, closing whatever is still open. close()
// only accepts fds of the calling environment, so a number passed to another thread (an eventfd
// used as a wake-up) can be written to there but never closed from there.
#ifndef TULLE_FD_H_
#define TULLE_FD_H_

#include <unordered_set>

#include "port.h"

namespace tulle {

// Owns one fd until Release(); closes it on destruction. Used while a socket or device is being
// set up so that every early return closes it.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&&) = delete;
  UniqueFd& operator=(UniqueFd&&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// The set of fds opened by one environment. Not thread-safe: used only on its environment's thread.
class FdRegistry {
 public:
  FdRegistry() = default;
  ~FdRegistry();  // closes every fd still registered
  FdRegistry(const FdRegistry&) = delete;
  FdRegistry& operator=(const FdRegistry&) = delete;
  FdRegistry(FdRegistry&&) = delete;
  FdRegistry& operator=(FdRegistry&&) = delete;

  // Takes ownership of a fully set-up fd and returns it.
  int Adopt(UniqueFd& fd);
  // Closes a registered fd: 0, -EBADF if this environment does not own it, or -errno from close().
  int Close(int fd);

 private:
  std::unordered_set<int> fds_;
};

// Per-environment instance data.
struct AddonState {
  FdRegistry fds;
  PortRegistry ports;
};

// Waits up to timeout_ms for fd to become writable (used once per batch after EAGAIN).
void WaitWritable(int fd, int timeout_ms);

// Returns -errno for the current errno.
int NegErrno();

}  // namespace tulle

#endif  // TULLE_FD_H_
