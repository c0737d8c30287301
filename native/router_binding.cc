// router_binding.cc: placeholder until the router binding lands.
#include <napi.h>
namespace moat {
void InitRouterBinding(Napi::Env, Napi::Object) {}
}  // namespace moat
