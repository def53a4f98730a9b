// CPU placement of the calling thread: which CPUs it may run on, and pinning it to some of them.
// Worker threads pin themselves (agent config "cpus"), so a forwarding loop and the processes it
// serves can share a CPU instead of waking each other across CPUs.
#include <errno.h>
#include <sched.h>

#include <cstdint>
#include <memory>
#include <string>

#include "addon.h"
#include "args.h"

namespace tulle {
namespace {

// CPU numbers 0..kMaxCpus-1 are accepted and reported; the set is sized for them explicitly, since
// CPU_SETSIZE differs between C libraries (1024 with glibc, 128 with musl).
constexpr int32_t kMaxCpus = 1024;

struct CpuSetFree {
  void operator()(cpu_set_t* s) const { CPU_FREE(s); }
};
using CpuSet = std::unique_ptr<cpu_set_t, CpuSetFree>;
const size_t kCpuSetBytes = CPU_ALLOC_SIZE(kMaxCpus);

CpuSet NewCpuSet() {
  CpuSet set(CPU_ALLOC(kMaxCpus));
  if (set) CPU_ZERO_S(kCpuSetBytes, set.get());
  return set;
}

// threadCpus(out) -> count | -errno. The CPUs the calling thread may run on, ascending, in out
// (as many as fit); the count is the full number even when out is shorter.
Napi::Value ThreadCpus(const Napi::CallbackInfo& info) {
  Args a(info, "threadCpus");
  Span<int32_t> out;
  if (!a.Int32s(0, "out", &out)) return Napi::Value();
  CpuSet set = NewCpuSet();
  if (!set) return Int(a.env(), -ENOMEM);
  if (sched_getaffinity(0, kCpuSetBytes, set.get()) < 0) return Int(a.env(), NegErrno());
  int32_t n = 0;
  for (int32_t cpu = 0; cpu < kMaxCpus; cpu++) {
    if (!CPU_ISSET_S(cpu, kCpuSetBytes, set.get())) continue;
    if (static_cast<size_t>(n) < out.len) out.data[n] = cpu;
    n++;
  }
  return Int(a.env(), n);
}

// pinThread(cpus, count) -> 0 | -errno. Lets the calling thread (not the whole process) run only
// on cpus[0..count); -EINVAL when none of them is usable.
Napi::Value PinThread(const Napi::CallbackInfo& info) {
  Args a(info, "pinThread");
  Span<int32_t> cpus;
  int32_t count;
  if (!a.Int32s(0, "cpus", &cpus) || !a.Int32(1, "count", &count)) return Napi::Value();
  if (count < 1 || static_cast<size_t>(count) > cpus.len) return a.RangeError("count", "must be in 1..cpus.length");
  CpuSet set = NewCpuSet();
  if (!set) return Int(a.env(), -ENOMEM);
  for (int32_t i = 0; i < count; i++) {
    if (cpus.data[i] < 0 || cpus.data[i] >= kMaxCpus) {
      return a.RangeError("cpus", ("holds a CPU number outside 0.." + std::to_string(kMaxCpus - 1)).c_str());
    }
    CPU_SET_S(cpus.data[i], kCpuSetBytes, set.get());
  }
  if (sched_setaffinity(0, kCpuSetBytes, set.get()) < 0) return Int(a.env(), NegErrno());
  return Int(a.env(), 0);
}

}  // namespace

void RegisterSched(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("threadCpus", Napi::Function::New(env, ThreadCpus, "threadCpus"));
  exports.Set("pinThread", Napi::Function::New(env, PinThread, "pinThread"));
  SetConstant(constants, "MAX_CPUS", kMaxCpus);
}

}  // namespace tulle
