//! @file detail/cache_layer.hpp
//! Everything a `kv_cache` keeps for one layer: its parts (token store, segment table, sequences, decode queries,
//! selection buffers) and its two per-layer policies, plus the views the policies are handed.
#pragma once

#include <skv/concepts.hpp>
#include <skv/detail/decode_queries.hpp>
#include <skv/detail/segment_table.hpp>
#include <skv/detail/selection_buffers.hpp>
#include <skv/detail/sequence_table.hpp>
#include <skv/detail/token_store.hpp>

#include <algorithm>

SKV_NAMESPACE_BEGIN
namespace detail {

template <class T, class Sum, class Sel, class Off>
struct cache_layer {
  cache_layer(const typename Sel::options& so, const typename Off::options& oo, const policy_init& init)
      : store(init.shape.head_dim, init.memory), segments(init.shape.head_dim, init.memory), seqs(init.memory),
        queries(init.memory), sel(init.memory), keep(init.memory), selector(so, init), offloader(oo, init) {}

  token_store<T, Off::store_tier> store;
  segment_table<T, Sum> segments; //!< empty unless the cache tracks segments
  sequence_table seqs;
  decode_queries queries;
  selection_buffers sel;
  retention_buffers keep; //!< eviction lists (prefill uses its own, short-lived ones)
  Sel selector;
  Off offloader;
  fetched_view<T> fetched;
  int batch = 0;
  bool prefilled = false;
  std::size_t moved_to_slow = 0; //!< K/V bytes offloaded since the last ledger()

  int pairs(const model_shape& s) const { return batch * s.num_kv_heads; }
  //! Sizes every part and policy for `r` (resolved: `max_segments` set); returns the most tokens a pair attends.
  std::int64_t reserve(reservation r, const model_shape& shape, bool with_segments, stream_t s) {
    const int P = r.max_pairs(shape);
    r.max_selected = selector.max_selected();
    const std::int64_t retained = selector.max_retained(r);
    synchronize(s); // buffers may move: nothing may still be reading them
    store.reserve(P, retained, s);
    if (with_segments) segments.reserve(P, r.max_segments, s);
    seqs.reserve(r.max_batch, P, r.max_segments);
    queries.reserve(r.max_batch, shape.num_q_heads, shape.head_dim);
    sel.reserve(P, r.max_selected);
    keep.reserve(P, retained);
    if constexpr (reserving_policy<Sel>) selector.reserve(r);
    if constexpr (reserving_policy<Off>) offloader.reserve(r);
    sel.fetched = false; // the fetched view points into buffers that may have moved
    synchronize(s);
    return std::max(retained, r.max_selected);
  }
  selection current_selection() { return sel.current(selector.max_selected()); }
  select_context<T, Sum> select_ctx(const layer_info& li) const {
    return {li, store.view(), segments.view(),
            query_view{queries.current(), queries.partial_sum(), seqs.device(sequence_table::partial_count)},
            seqs.seqs()};
  }
  std::size_t fast_bytes() const {
    return store.fast_bytes() + segments.fast_bytes() + seqs.fast_bytes() + queries.fast_bytes() + sel.fast_bytes() +
           keep.fast_bytes() + selector.bytes() + offloader.bytes() +
           (Off::store_tier == tier::fast ? store.tier_bytes() : 0);
  }
};

} // namespace detail
SKV_NAMESPACE_END
