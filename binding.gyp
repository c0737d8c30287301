{
  "targets": [
    {
      "target_name": "moat",
      "sources": [
        "native/frame.cc",
        "native/tun.cc",
        "native/classifier.cc",
        "native/router.cc",
        "native/router_control.cc",
        "native/peer.cc",
        "native/limiter.cc",
        "native/addresses.cc",
        "native/peer_identity.cc",
        "native/listen_socket.cc",
        "native/device.cc",
        "native/pty_common.cc",
        "native/pty_socket.cc",
        "native/path_walk.cc",
        "native/pty_process.cc",
        "native/pty_router.cc",
        "native/pty_shared.cc",
        "native/pty_client.cc",
        "native/gso.cc",
        "native/coalesce.cc",
        "native/offload.cc",
        "native/remove_tree.cc",
        "native/harden.cc",
        "native/addon.cc",
        "native/router_binding.cc",
        "native/device_binding.cc",
        "native/classifier_binding.cc",
        "native/rule_binding.cc",
        "native/pty_binding.cc",
        "native/gso_binding.cc",
        "native/containment_binding.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      "target_name": "moat-vassal",
      "type": "executable",
      "sources": [
        "native/frame.cc",
        "native/tun.cc",
        "native/device.cc",
        "native/pty_common.cc",
        "native/pty_socket.cc",
        "native/path_walk.cc",
        "native/pty_process.cc",
        "native/pty_router.cc",
        "native/pty_shared.cc",
        "native/gso.cc",
        "native/coalesce.cc",
        "native/offload.cc",
        "native/runtime/main.cc",
        "native/runtime/channel.cc",
        "native/runtime/jail.cc",
        "native/runtime/runtime.cc"
      ],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lpthread"]
    }
  ]
}
