// device_binding.cc: placeholder until the device binding lands.
#include <napi.h>
namespace moat {
void InitDeviceBinding(Napi::Env, Napi::Object) {}
}  // namespace moat
