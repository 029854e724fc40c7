//! @file offloader/device_offloader.hpp
//! Every retained token stays on the fast tier; what the selector does not retain is evicted (its memory reused).
//! Attention reads the selected rows in place: nothing is copied.
#pragma once

#include <skv/policy.hpp>

SKV_NAMESPACE_BEGIN

//! The store on the fast tier; the selected rows are read where they are.
struct device_offloader {
  struct options {};
  static constexpr tier store_tier = tier::fast;

  device_offloader(const options&, const policy_init&) {}

  template <class T>
  fetched_view<T> fetch(const store_view<T>& store, const selection& sel, const layer_info&) {
    return {store.k_base, store.v_base, store.k_base, store.v_base, sel.index, sel.capacity};
  }
  void invalidate(const layer_info&) {}
  std::size_t take_moved_bytes(const layer_info&) { return 0; }
  std::size_t bytes() const { return 0; }
};

SKV_NAMESPACE_END
