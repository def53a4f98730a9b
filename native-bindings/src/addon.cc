// Module entry point. Node-API calls Init once per environment (the main thread and every worker
// that loads the addon), so nothing here is static: each environment gets its own AddonState,
// owned by an environment cleanup hook that deletes it (closing the fds still open) when the
// environment is torn down, including when a worker is terminated.
#include "addon.h"
#include "args.h"

namespace tulle {
namespace {

void DestroyState(void* arg) { delete static_cast<AddonState*>(arg); }

// close(fd) -> 0 | -errno; -EBADF when the fd was not opened by this environment.
Napi::Value Close(const Napi::CallbackInfo& info) {
  Args a(info, "close");
  int32_t fd;
  if (!a.Int32(0, "fd", &fd)) return Napi::Value();
  return Int(a.env(), State(a.env()).fds.Close(fd));
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* state = new AddonState();
  // The cleanup hook owns the state; instance data only points at it.
  if (napi_add_env_cleanup_hook(env, DestroyState, state) != napi_ok) {
    delete state;
    Napi::Error::New(env, "tulle_native: cannot register cleanup hook").ThrowAsJavaScriptException();
    return exports;
  }
  napi_set_instance_data(env, state, nullptr, nullptr);

  Napi::Object constants = Napi::Object::New(env);
  SetConstant(constants, "MAX_BATCH", kMaxBatch);
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  RegisterIface(env, exports, constants);
  RegisterPoll(env, exports, constants);
  RegisterTun(env, exports, constants);
  RegisterUdp(env, exports, constants);
  RegisterOffload(env, exports, constants);
  RegisterSegment(env, exports, constants);
  RegisterLock(env, exports, constants);
  RegisterSched(env, exports, constants);
  RegisterPort(env, exports, constants);
  constants.Freeze();
  exports.Set("constants", constants);
  return exports;
}

AddonState& State(Napi::Env env) { return *env.GetInstanceData<AddonState>(); }

}  // namespace tulle

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return tulle::Init(env, exports); }

NODE_API_MODULE(tulle_native, InitModule)
