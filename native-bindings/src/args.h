// Argument extraction for the exported functions. Each getter makes one Node-API call, checks the
// JS type and, on mismatch, leaves a pending TypeError naming the function and the argument and
// returns false; the caller then returns an empty value. Range checks throw RangeError the same
// way. TypeScript (src/io/native.ts) validates first; these checks keep a bypassing caller from
// making the addon touch memory outside its buffers.
#ifndef TULLE_ARGS_H_
#define TULLE_ARGS_H_

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace tulle {

// Data of a TypedArray argument, valid for the duration of the call.
template <typename T>
struct Span {
  T* data = nullptr;
  size_t len = 0;  // in elements
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}
  Args(const Args&) = delete;
  Args& operator=(const Args&) = delete;

  Napi::Env env() const { return info_.Env(); }

  bool Int32(size_t i, const char* name, int32_t* out) const;
  bool Uint32(size_t i, const char* name, uint32_t* out) const;
  bool Bool(size_t i, const char* name, bool* out) const;
  // Copies a string into buf (NUL-terminated); throws RangeError if it needs cap bytes or more.
  bool String(size_t i, const char* name, char* buf, size_t cap) const;

  bool Bytes(size_t i, const char* name, Span<uint8_t>* out) const;
  bool Int32s(size_t i, const char* name, Span<int32_t>* out) const;
  bool Uint32s(size_t i, const char* name, Span<uint32_t>* out) const;
  bool Uint16s(size_t i, const char* name, Span<uint16_t>* out) const;

  // True when argument i was passed and is not undefined (for optional trailing arguments).
  bool Has(size_t i) const { return info_.Length() > i && !info_[i].IsUndefined(); }

  // Leaves a pending RangeError "<fn>: <name> <what>" and returns an empty value.
  Napi::Value RangeError(const char* name, const char* what) const;

 private:
  bool TypeError(const char* name, const char* want) const;
  bool Typed(size_t i, const char* name, napi_typedarray_type type, const char* want, void** data,
             size_t* len) const;

  const Napi::CallbackInfo& info_;
  const char* fn_;
};

}  // namespace tulle

#endif  // TULLE_ARGS_H_
