//! @file offloader/device_offloader.hpp
//! Every retained token stays on the fast tier; what the selector does not retain is evicted (its memory freed).
//! Attention reads the selected rows in place: nothing is copied.
#pragma once

#include <skv/detail/layer_state.hpp>

#include <vector>

SKV_NAMESPACE_BEGIN

struct device_offloader {
  struct options {};
  static constexpr tier store_tier = tier::fast;

  device_offloader() = default;
  explicit device_offloader(const options&) {}

  template <class L>
  void fetch(L& l) {
    using T = typename L::value_type;
    const int P = l.pairs();
    std::vector<const T*> kb(P), vb(P);
    for (int p = 0; p < P; ++p) {
      kb[p] = raw(l.store.k) + l.store.layout.offset[p] * l.dim();
      vb[p] = raw(l.store.v) + l.store.layout.offset[p] * l.dim();
    }
    l.fetched.k_base.assign(kb.begin(), kb.end());
    l.fetched.v_base.assign(vb.begin(), vb.end());
    l.fetched.slots = raw(l.sel.index);
    l.fetched.slot_stride = l.sel.capacity;
  }
  void reset() {}
  std::size_t bytes() const { return 0; }
};

SKV_NAMESPACE_END
