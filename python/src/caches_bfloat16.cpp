// The presets with bfloat16 K/V storage (one translation unit per storage type, so they compile in parallel).
#include "cache_impl.hpp"

namespace skv_python {
std::map<std::string, factory> factories_bfloat16() { return make_factories<skv::bfloat16>(); }
} // namespace skv_python
