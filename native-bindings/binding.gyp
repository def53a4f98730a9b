# Builds build/Release/tulle_native.node, the thin Node-API addon loaded only by src/io/native.ts,
# and two programs the bench measures against: build/Release/tulle_handoff (what process hand-offs
# cost, handoff.c) and build/Release/tulle_udptun (a minimal userspace tunnel, udptun.c).
# C++17, node-addon-api without C++ exceptions (errors travel as negative errno or a pending JS
# exception), -O2 instead of node-gyp's default -O3.
{
  "targets": [
    {
      "target_name": "tulle_native",
      "sources": [
        "src/addon.cc",
        "src/args.cc",
        "src/csum.cc",
        "src/fd.cc",
        "src/iface.cc",
        "src/lock.cc",
        "src/offload.cc",
        "src/poll.cc",
        "src/port.cc",
        "src/sched.cc",
        "src/segment.cc",
        "src/tun.cc",
        "src/udp.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "_GNU_SOURCE"
      ],
      "cflags!": ["-O3", "-fexceptions"],
      "cflags_cc!": ["-O3", "-fexceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions"]
    },
    {
      "target_name": "tulle_handoff",
      "type": "executable",
      "sources": ["src/handoff.c"],
      "cflags!": ["-O3"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "tulle_udptun",
      "type": "executable",
      "sources": ["src/udptun.c"],
      "cflags!": ["-O3"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
