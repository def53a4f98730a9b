// Interface lookups by name: ifNameToIndex, ifMtu.
#include <errno.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>

#include "addon.h"
#include "args.h"

namespace tulle {
namespace {

// ifNameToIndex(name) -> index | 0 when there is no such interface.
Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  Args a(info, "ifNameToIndex");
  char name[IFNAMSIZ];
  if (!a.String(0, "name", name, sizeof name)) return Napi::Value();
  return Uint(a.env(), if_nametoindex(name));
}

// ifMtu(name) -> MTU | -errno (SIOCGIFMTU on a throwaway socket).
Napi::Value IfMtu(const Napi::CallbackInfo& info) {
  Args a(info, "ifMtu");
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  if (!a.String(0, "name", ifr.ifr_name, sizeof ifr.ifr_name)) return Napi::Value();
  UniqueFd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return Int(a.env(), NegErrno());
  if (ioctl(sock.get(), SIOCGIFMTU, &ifr) < 0) return Int(a.env(), NegErrno());
  return Int(a.env(), ifr.ifr_mtu);
}

}  // namespace

void RegisterIface(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex, "ifNameToIndex"));
  exports.Set("ifMtu", Napi::Function::New(env, IfMtu, "ifMtu"));
  SetConstant(constants, "IFNAMSIZ", IFNAMSIZ);
}

}  // namespace tulle
