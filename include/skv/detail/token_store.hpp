//! @file detail/token_store.hpp
//! The retained tokens of one layer: K, V and logical positions per (sequence, KV head), on one tier.
#pragma once

#include <skv/detail/ragged.hpp>
#include <skv/numeric.hpp>
#include <skv/tensor.hpp>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Retained tokens of one layer on tier `Tier`. Within a pair, tokens are kept in increasing position, so the
//! "store index" of a token (its rank among the pair's retained tokens) orders like its position.
template <class T, tier Tier>
struct token_store {
  int dim = 0;
  ragged_layout layout;
  tier_vector<T, Tier> k;              //!< [capacity, dim] per pair
  tier_vector<T, Tier> v;              //!< [capacity, dim] per pair
  tier_vector<std::int32_t, Tier> pos; //!< [capacity] logical position of each stored token

  std::size_t bytes() const { return allocated_bytes(k) + allocated_bytes(v) + allocated_bytes(pos); }
  std::int64_t length(std::size_t p) const { return layout.length[p]; }

  const T* k_row(std::size_t p) const { return raw(k) + layout.offset[p] * dim; }
  const T* v_row(std::size_t p) const { return raw(v) + layout.offset[p] * dim; }

  //! Re-lays the regions with the given lengths kept and capacities, preserving rows [0, length).
  void relayout_to(const std::vector<std::int64_t>& capacities, const std::vector<std::int64_t>& lengths) {
    ragged_layout to;
    to.assign(capacities, lengths);
    relayout(k, layout, to, dim);
    relayout(v, layout, to, dim);
    relayout(pos, layout, to, 1);
    layout = std::move(to);
  }

  //! Ensures every pair can take `extra` more tokens without re-layout.
  void reserve_append(std::int64_t extra) {
    bool grow = false;
    for (std::size_t p = 0; p < layout.pairs(); ++p) grow |= layout.length[p] + extra > layout.capacity[p];
    if (!grow) return;
    std::vector<std::int64_t> caps(layout.pairs());
    for (std::size_t p = 0; p < caps.size(); ++p)
      caps[p] = std::max(layout.capacity[p], grown_capacity(layout.length[p] + extra, 64));
    relayout_to(caps, layout.length);
  }
};

//! Gathers engine rows into a store: for pair p = (seq b, head h) and i < count[p], the token at packed row
//! `seq_offset[b] + src_pos[keep_offset[p] + i]` of the views goes to store slot `dst_offset[p] + first[p] + i`.
template <class T, class Src>
struct gather_into_store {
  tensor_view<const Src> k_in, v_in;
  T* k;
  T* v;
  std::int32_t* pos;
  const std::int64_t* dst_offset;
  const std::int64_t* first;       // [pairs] first destination row
  const std::int64_t* keep_offset; // [pairs + 1] CSR of positions to copy
  const std::int32_t* keep_pos;    // [nnz] positions within the sequence
  const std::int64_t* seq_offset;  // [batch] packed row of each sequence's position 0
  int kv_heads;
  int dim;
  std::int64_t max_rows;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, r = i % max_rows;
    const std::int64_t n = keep_offset[p + 1] - keep_offset[p];
    if (r >= n) return;
    const int b = int(p / kv_heads), h = int(p % kv_heads);
    const std::int32_t position = keep_pos[keep_offset[p] + r];
    const std::int64_t row = seq_offset[b] + position;
    const std::int64_t dst = dst_offset[p] + first[p] + r;
    const Src* ks = k_in.at(row, h);
    const Src* vs = v_in.at(row, h);
    T* kd = k + dst * dim;
    T* vd = v + dst * dim;
    for (int d = 0; d < dim; ++d) {
      if constexpr (std::is_same_v<T, Src>) {
        kd[d] = ks[d];
        vd[d] = vs[d];
      } else {
        kd[d] = from_float<T>(to_float(ks[d]));
        vd[d] = from_float<T>(to_float(vs[d]));
      }
    }
    pos[dst] = position;
  }
};

} // namespace detail
SKV_NAMESPACE_END
