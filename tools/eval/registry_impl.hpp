#pragma once
//! \file registry_impl.hpp
//! Internal to tools/eval: the type-erased wrapper of one kv_cache and its construction from a cache_config (shared
//! by the preset registry and the ablation variants).

#include "registry.hpp"

namespace skv::eval::detail {

template <class Cache>
class cache_model final : public cache_handle {
public:
  cache_model(const skv::model_shape& shape, const typename Cache::options& o) : cache_(shape, o) {}
  void prefill(int layer, const skv::prefill_args<float>& a) override { cache_.prefill(layer, a); }
  void step(int layer, const skv::decode_args<float>& a, skv::tensor_view<float> out) override {
    cache_.step(layer, a, out);
  }
  skv::selection_csr selection(int layer) override { return cache_.selection(layer); }
  skv::memory_ledger ledger() override { return cache_.ledger(); }
  std::int64_t retained(int layer, int seq, int head) const override { return cache_.retained(layer, seq, head); }

private:
  Cache cache_;
};

//! Builds `Cache` with the config's budget and boundaries, then `tweak(options&)` (the ablations' changes).
template <class Cache, class Tweak = void (*)(typename Cache::options&)>
std::unique_ptr<cache_handle> build(
    const skv::model_shape& shape, const cache_config& c, Tweak tweak = [](typename Cache::options&) {}) {
  typename Cache::options o;
  if constexpr (requires { o.selector.budget; })
    if (c.budget) o.selector.budget = *c.budget;
  if constexpr (requires { o.segmenter.boundaries; }) o.segmenter.boundaries = c.boundaries;
  tweak(o);
  return std::make_unique<cache_model<Cache>>(shape, o);
}

} // namespace skv::eval::detail
