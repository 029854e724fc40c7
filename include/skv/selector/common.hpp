//! @file selector/common.hpp
//! Building blocks shared by the selectors: range-based retention and the "everything retained" selection.
#pragma once

#include <skv/detail/layer_state.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Per pair, the indices [0, head) and [n - tail, n) of a list of length n (merged when they overlap).
//! `length(p)` gives n. Used for sink + recent retention, at prefill (positions) and append (store indices).
template <class Length>
void keep_head_tail(int pairs, Length length, std::int64_t head, std::int64_t tail, index_lists& keep) {
  keep.offset.assign(pairs + 1, 0);
  std::vector<std::int32_t> idx;
  for (int p = 0; p < pairs; ++p) {
    const std::int64_t n = length(p), h = std::min(head, n), t0 = std::max(h, n - tail);
    for (std::int64_t i = 0; i < h; ++i) idx.push_back(std::int32_t(i));
    for (std::int64_t i = t0; i < n; ++i) idx.push_back(std::int32_t(i));
    keep.offset[p + 1] = std::int64_t(idx.size());
  }
  keep.index.assign(idx.begin(), idx.end());
  keep.upload();
}

//! Retain every prompt token.
template <class L, class Src>
void retain_everything(const L& l, const prefill_input<Src>& in, index_lists& keep) {
  keep_head_tail(
      l.pairs(), [&](int p) { return std::int64_t(in.seq_len[p / l.kv_heads()]); }, 0, INT32_MAX, keep);
}

//! Select every retained token of every pair.
template <class L>
void select_everything(L& l) {
  const int P = l.pairs();
  std::vector<std::int32_t> count(P);
  for (int p = 0; p < P; ++p) count[p] = std::int32_t(l.store.length(p));
  l.sel.capacity = 0;
  l.sel.count.assign(count.begin(), count.end());
  l.sel.all.assign(P, 1);
}

} // namespace detail
SKV_NAMESPACE_END
