// tun.cc: placeholder.
