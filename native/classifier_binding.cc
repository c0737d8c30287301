// classifier_binding.cc: placeholder until the classifier binding lands.
#include <napi.h>
namespace moat {
void InitClassifierBinding(Napi::Env, Napi::Object) {}
}  // namespace moat
