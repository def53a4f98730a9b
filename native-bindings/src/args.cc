#include "args.h"

#include <cstring>
#include <string>

namespace tulle {

bool Args::TypeError(const char* name, const char* want) const {
  std::string msg = std::string(fn_) + ": " + name + " must be " + want;
  Napi::TypeError::New(env(), msg).ThrowAsJavaScriptException();
  return false;
}

Napi::Value Args::RangeError(const char* name, const char* what) const {
  std::string msg = std::string(fn_) + ": " + name + " " + what;
  Napi::RangeError::New(env(), msg).ThrowAsJavaScriptException();
  return Napi::Value();
}

bool Args::Int32(size_t i, const char* name, int32_t* out) const {
  if (napi_get_value_int32(env(), info_[i], out) != napi_ok) return TypeError(name, "a number");
  return true;
}

bool Args::Uint32(size_t i, const char* name, uint32_t* out) const {
  if (napi_get_value_uint32(env(), info_[i], out) != napi_ok) return TypeError(name, "a number");
  return true;
}

bool Args::Bool(size_t i, const char* name, bool* out) const {
  if (napi_get_value_bool(env(), info_[i], out) != napi_ok) return TypeError(name, "a boolean");
  return true;
}

bool Args::String(size_t i, const char* name, char* buf, size_t cap) const {
  size_t len = 0;
  if (napi_get_value_string_utf8(env(), info_[i], nullptr, 0, &len) != napi_ok) {
    return TypeError(name, "a string");
  }
  if (len >= cap) {
    RangeError(name, "is too long");
    return false;
  }
  napi_get_value_string_utf8(env(), info_[i], buf, cap, &len);
  if (std::memchr(buf, 0, len) != nullptr) {
    RangeError(name, "contains a NUL byte");
    return false;
  }
  return true;
}

bool Args::Typed(size_t i, const char* name, napi_typedarray_type type, const char* want,
                 void** data, size_t* len) const {
  napi_typedarray_type actual;
  napi_status s = napi_get_typedarray_info(env(), info_[i], &actual, len, data, nullptr, nullptr);
  if (s != napi_ok || actual != type) return TypeError(name, want);
  return true;
}

bool Args::Bytes(size_t i, const char* name, Span<uint8_t>* out) const {
  void* data = nullptr;
  if (!Typed(i, name, napi_uint8_array, "a Uint8Array", &data, &out->len)) return false;
  out->data = static_cast<uint8_t*>(data);
  return true;
}

bool Args::Int32s(size_t i, const char* name, Span<int32_t>* out) const {
  void* data = nullptr;
  if (!Typed(i, name, napi_int32_array, "an Int32Array", &data, &out->len)) return false;
  out->data = static_cast<int32_t*>(data);
  return true;
}

bool Args::Uint32s(size_t i, const char* name, Span<uint32_t>* out) const {
  void* data = nullptr;
  if (!Typed(i, name, napi_uint32_array, "a Uint32Array", &data, &out->len)) return false;
  out->data = static_cast<uint32_t*>(data);
  return true;
}

bool Args::Uint16s(size_t i, const char* name, Span<uint16_t>* out) const {
  void* data = nullptr;
  if (!Typed(i, name, napi_uint16_array, "a Uint16Array", &data, &out->len)) return false;
  out->data = static_cast<uint16_t*>(data);
  return true;
}

}  // namespace tulle
