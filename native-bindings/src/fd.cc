#include "fd.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

namespace tulle {

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) close(fd_);
}

FdRegistry::~FdRegistry() {
  for (int fd : fds_) close(fd);
}

int FdRegistry::Adopt(UniqueFd& fd) {
  int raw = fd.Release();
  fds_.insert(raw);
  return raw;
}

int FdRegistry::Close(int fd) {
  if (fds_.erase(fd) == 0) return -EBADF;
  // Linux releases the descriptor even when close() reports EINTR.
  if (close(fd) < 0 && errno != EINTR) return NegErrno();
  return 0;
}

void WaitWritable(int fd, int timeout_ms) {
  struct pollfd p = {fd, POLLOUT, 0};
  poll(&p, 1, timeout_ms);
}

int NegErrno() { return errno > 0 ? -errno : -EIO; }

}  // namespace tulle
