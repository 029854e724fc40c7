// The presets with float16 K/V storage (one translation unit per storage type, so they compile in parallel).
#include "cache_impl.hpp"

namespace skv_python {
std::map<std::string, factory> factories_float16() { return make_factories<skv::half>(); }
} // namespace skv_python
