// Shared declarations of the addon's translation units: batch limits, the per-environment state
// accessor and one Register function per file, each adding that file's exports.
#ifndef TULLE_ADDON_H_
#define TULLE_ADDON_H_

#include <napi.h>

#include "fd.h"

// UDP offload socket options (linux/udp.h), for C libraries whose headers predate them.
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace tulle {

// Largest batch of one tunRead/tunWrite/udpRecv/udpSend call; per-call arrays live on the stack.
constexpr int kMaxBatch = 256;
// Largest fd set of one poll call.
constexpr int kMaxPollFds = 64;
// How long a batch write waits, once, for a full queue or socket buffer to drain.
constexpr int kWriteWaitMs = 2;

// Module initialisation for one environment.
Napi::Object Init(Napi::Env env, Napi::Object exports);

// The calling environment's state (set up by Init in addon.cc).
AddonState& State(Napi::Env env);

// Helpers for the usual shape of an export: a number result.
inline Napi::Value Int(Napi::Env env, int32_t v) { return Napi::Number::New(env, v); }
inline Napi::Value Uint(Napi::Env env, uint32_t v) { return Napi::Number::New(env, v); }

// Each adds its functions to exports and its kernel constants to constants.
void RegisterIface(Napi::Env env, Napi::Object exports, Napi::Object constants);
void RegisterPoll(Napi::Env env, Napi::Object exports, Napi::Object constants);
void RegisterTun(Napi::Env env, Napi::Object exports, Napi::Object constants);
void RegisterUdp(Napi::Env env, Napi::Object exports, Napi::Object constants);
void RegisterOffload(Napi::Env env, Napi::Object exports, Napi::Object constants);
void RegisterSegment(Napi::Env env, Napi::Object exports, Napi::Object constants);
void RegisterLock(Napi::Env env, Napi::Object exports, Napi::Object constants);
void RegisterSched(Napi::Env env, Napi::Object exports, Napi::Object constants);
void RegisterPort(Napi::Env env, Napi::Object exports, Napi::Object constants);

inline void SetConstant(Napi::Object obj, const char* name, int32_t value) {
  obj.Set(name, Napi::Number::New(obj.Env(), value));
}

}  // namespace tulle

#endif  // TULLE_ADDON_H_
