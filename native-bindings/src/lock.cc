// Advisory file locks for on-disk state shared with other processes (the IPAM directory's `lock`
// file, which host-local's go-filemutex also flocks): lockOpen, flock, funlock.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>

#include "addon.h"
#include "args.h"

namespace tulle {
namespace {

// lockOpen(path) -> fd | -errno. Opens (creating with mode 0600) a lock file read-write,
// close-on-exec, owned by the calling environment.
Napi::Value LockOpen(const Napi::CallbackInfo& info) {
  Args a(info, "lockOpen");
  char path[PATH_MAX];
  if (!a.String(0, "path", path, sizeof path)) return Napi::Value();
  UniqueFd fd(open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return Int(a.env(), NegErrno());
  return Int(a.env(), State(a.env()).fds.Adopt(fd));
}

// flock(fd, exclusive, nonBlocking) -> 0 | -errno (-EWOULDBLOCK when nonBlocking and held).
// Blocking mode blocks the calling thread until the lock is granted; EINTR is retried.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Args a(info, "flock");
  int32_t fd;
  bool exclusive, non_blocking;
  if (!a.Int32(0, "fd", &fd) || !a.Bool(1, "exclusive", &exclusive) ||
      !a.Bool(2, "nonBlocking", &non_blocking)) {
    return Napi::Value();
  }
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (non_blocking ? LOCK_NB : 0);
  int r;
  do {
    r = flock(fd, op);
  } while (r < 0 && errno == EINTR);
  return Int(a.env(), r < 0 ? NegErrno() : 0);
}

// funlock(fd) -> 0 | -errno. Releases a lock taken with flock on the same open file.
Napi::Value Funlock(const Napi::CallbackInfo& info) {
  Args a(info, "funlock");
  int32_t fd;
  if (!a.Int32(0, "fd", &fd)) return Napi::Value();
  return Int(a.env(), flock(fd, LOCK_UN) < 0 ? NegErrno() : 0);
}

}  // namespace

void RegisterLock(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("lockOpen", Napi::Function::New(env, LockOpen, "lockOpen"));
  exports.Set("flock", Napi::Function::New(env, Flock, "flock"));
  exports.Set("funlock", Napi::Function::New(env, Funlock, "funlock"));
  SetConstant(constants, "PATH_MAX", PATH_MAX);
}

}  // namespace tulle
