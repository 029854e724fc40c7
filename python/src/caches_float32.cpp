// The presets with float32 K/V storage (one translation unit per storage type, so they compile in parallel).
#include "cache_impl.hpp"

namespace skv_python {
std::map<std::string, factory> factories_float32() { return make_factories<float>(); }
} // namespace skv_python
