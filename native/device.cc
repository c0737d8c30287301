// device.cc: placeholder.
