//! @file detail/token_store.hpp
//! The retained tokens of one layer: K, V and logical positions per (sequence, KV head), on one tier.
#pragma once

#include <skv/detail/ragged.hpp>
#include <skv/numeric.hpp>
#include <skv/policy.hpp>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Copies one [dim] row, converting to the storage type.
template <class T, class Src>
SKV_HOST_DEVICE SKV_FORCEINLINE void store_row(T* dst, const Src* src, int dim) {
  for (int d = 0; d < dim; ++d) {
    if constexpr (std::is_same_v<T, Src>)
      dst[d] = src[d];
    else
      dst[d] = from_float<T>(to_float(src[d]));
  }
}

//! Prefill: for pair p = (seq b, head h) and r < keep_len[p], prompt position keep[p * stride + r] of sequence b
//! goes to store row offset[p] + r.
template <class T, class Src>
struct gather_prompt {
  tensor_view<const Src> k_in, v_in;
  T* k;
  T* v;
  std::int32_t* pos;
  const std::int64_t* offset;
  const std::int32_t* keep;
  const std::int32_t* keep_len;
  std::int64_t stride;
  const std::int64_t* seq_row; //!< [batch] packed row of each sequence's position 0
  int kv_heads, dim;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / stride, r = i % stride;
    if (r >= keep_len[p]) return;
    const std::int64_t b = p / kv_heads, h = p % kv_heads;
    const std::int32_t position = keep[p * stride + r];
    const std::int64_t row = seq_row[b] + position, dst = offset[p] + r;
    store_row(k + dst * dim, k_in.at(row, h), dim);
    store_row(v + dst * dim, v_in.at(row, h), dim);
    pos[dst] = position;
  }
};

//! Decode: one token per pair joins the end of its region; the device length grows by one.
template <class T, class Src>
struct append_token {
  tensor_view<const Src> k_in, v_in;
  T* k;
  T* v;
  std::int32_t* pos;
  const std::int64_t* offset;
  std::int32_t* length;
  const std::int32_t* position; //!< [batch] position of the new token
  int kv_heads, dim;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int64_t b = p / kv_heads, h = p % kv_heads, dst = offset[p] + length[p];
    store_row(k + dst * dim, k_in.at(b, h), dim);
    store_row(v + dst * dim, v_in.at(b, h), dim);
    pos[dst] = position[b];
    length[p] += 1;
  }
};

//! Eviction in place: row r of pair p becomes row keep[p * stride + r], for r < keep_len[p]. keep is increasing and
//! keep[r] >= r, so walking r upwards never reads a row already overwritten. Work item = (pair, column block):
//! each item walks the rows in order over its own columns.
template <class T>
struct compact_rows {
  T* k;
  T* v;
  std::int32_t* pos;
  const std::int64_t* offset;
  std::int32_t* length;
  const std::int32_t* keep;
  const std::int32_t* keep_len;
  std::int64_t stride;
  int dim, cols, blocks;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / blocks;
    const int c0 = int(i % blocks) * cols;
    const std::int32_t n = keep_len[p];
    const std::int32_t* kp = keep + p * stride;
    const std::int64_t base = offset[p];
    for (std::int32_t r = 0; r < n; ++r) {
      const std::int64_t src = base + kp[r], dst = base + r;
      if (src == dst) continue;
      for (int c = c0; c < c0 + cols; ++c) {
        k[dst * dim + c] = k[src * dim + c];
        v[dst * dim + c] = v[src * dim + c];
      }
      if (c0 == 0) pos[dst] = pos[src];
    }
    if (c0 == 0) length[p] = n;
  }
};

//! Per pair: pointers to the first key and value row of its region.
template <class T>
struct region_bases {
  const T* k;
  const T* v;
  const std::int64_t* offset;
  const T** k_base;
  const T** v_base;
  int dim;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    k_base[p] = k + offset[p] * dim;
    v_base[p] = v + offset[p] * dim;
  }
};

//! Retained tokens of one layer on tier `Tier`. Within a pair, tokens are kept in increasing position, so the
//! "store index" of a token (its rank among the pair's retained tokens) orders like its position.
template <class T, tier Tier>
class token_store {
public:
  token_store(int dim, const tier_resources& mem) : dim_(dim) {
    layout_.bind(mem.of(tier::fast));
    skv::bind(k_, mem.of(Tier));
    skv::bind(v_, mem.of(Tier));
    skv::bind(pos_, mem.of(Tier));
    skv::bind(k_base_, mem.of(tier::fast));
    skv::bind(v_base_, mem.of(tier::fast));
  }

  //! Allocates room for `max_pairs` regions of `rows_per_pair` rows, so that prompts and appends within those
  //! sizes lay out and grow without allocating. A store that holds tokens is re-laid with that room now.
  void reserve(int max_pairs, std::int64_t rows_per_pair, stream_t s) {
    reserved_rows_ = rows_per_pair;
    const std::int64_t rows = std::int64_t(max_pairs) * rows_per_pair;
    if (layout_.pairs() > 0) {
      std::vector<std::int64_t> caps(layout_.pairs());
      for (std::size_t p = 0; p < caps.size(); ++p) caps[p] = std::max(layout_.capacity[p], rows_per_pair);
      relayout_to(caps, rows, s);
    } else {
      ensure_size(k_, std::size_t(rows) * dim_);
      ensure_size(v_, std::size_t(rows) * dim_);
      ensure_size(pos_, std::size_t(rows));
    }
    for (auto* h : {&layout_.offset, &layout_.capacity, &layout_.length}) h->reserve(max_pairs);
    ensure_size(layout_.d_offset, max_pairs);
    ensure_size(layout_.d_length, max_pairs);
    ensure_size(k_base_, max_pairs);
    ensure_size(v_base_, max_pairs);
    update_bases(s);
  }

  //! Prefill: lays out one region per pair and gathers the kept prompt positions into it.
  template <class Src>
  void assign_prompt(const tensor_view<const Src>& k, const tensor_view<const Src>& v, const retention_list& keep,
                     const std::int32_t* keep_len, const std::int64_t* seq_row, int kv_heads, stream_t s) {
    const std::size_t P = keep.length_host.size();
    std::vector<std::int64_t> caps(P), lens(keep.length_host.begin(), keep.length_host.end());
    for (std::size_t p = 0; p < P; ++p)
      caps[p] = lens[p] <= reserved_rows_ ? reserved_rows_ : grown_capacity(lens[p], 64);
    layout_.assign(caps, lens, s);
    const auto rows = std::size_t(layout_.total_capacity());
    ensure_size(k_, rows * dim_);
    ensure_size(v_, rows * dim_);
    ensure_size(pos_, rows);
    update_bases(s);
    parallel_for(std::int64_t(P) * keep.stride,
                 gather_prompt<T, Src>{k, v, raw(k_), raw(v_), raw(pos_), raw(layout_.d_offset), keep.index, keep_len,
                                       keep.stride, seq_row, kv_heads, dim_},
                 s);
  }

  //! Whether every pair can take `extra` more rows without a re-layout (host check).
  bool fits(std::int64_t extra) const {
    for (std::size_t p = 0; p < layout_.pairs(); ++p)
      if (layout_.length[p] + extra > layout_.capacity[p]) return false;
    return true;
  }
  //! Re-lays the regions so that each can take `extra` more rows (allocates; waits on `s`).
  void grow(std::int64_t extra, stream_t s) {
    std::vector<std::int64_t> caps(layout_.pairs());
    for (std::size_t p = 0; p < caps.size(); ++p)
      caps[p] = std::max(layout_.capacity[p], grown_capacity(layout_.length[p] + extra, 64));
    relayout_to(caps, 0, s);
  }

  //! Decode: one token per pair of the batch at `position[b]` (device); host lengths follow.
  template <class Src>
  void append(const tensor_view<const Src>& k, const tensor_view<const Src>& v, const std::int32_t* position,
              int kv_heads, stream_t s) {
    parallel_for(std::int64_t(layout_.pairs()),
                 append_token<T, Src>{k, v, raw(k_), raw(v_), raw(pos_), raw(layout_.d_offset), raw(layout_.d_length),
                                      position, kv_heads, dim_},
                 s);
    for (auto& l : layout_.length) ++l;
  }

  //! Keeps only the listed store indices of each pair (in place: nothing is allocated).
  void compact(const retention_list& keep, const std::int32_t* keep_len, stream_t s) {
#if defined(SKV_BACKEND_CUDA)
    const int cols = 1; // neighbouring threads copy neighbouring columns of the same row (coalesced)
#else
    const int cols = dim_; // one item copies whole rows (streaming reads)
#endif
    const int blocks = dim_ / cols;
    parallel_for(std::int64_t(layout_.pairs()) * blocks,
                 compact_rows<T>{raw(k_), raw(v_), raw(pos_), raw(layout_.d_offset), raw(layout_.d_length), keep.index,
                                 keep_len, keep.stride, dim_, cols, blocks},
                 s);
    for (std::size_t p = 0; p < layout_.pairs(); ++p) layout_.length[p] = keep.length_host[p];
  }

  store_view<T> view() const {
    return {Tier,
            dim_,
            raw(k_),
            raw(v_),
            raw(pos_),
            raw(layout_.d_offset),
            raw(layout_.d_length),
            raw(k_base_),
            raw(v_base_),
            layout_.offset,
            layout_.length};
  }
  std::int64_t length(std::size_t p) const { return layout_.length[p]; }
  std::int64_t max_length() const { return layout_.max_length(); }
  std::size_t pairs() const { return layout_.pairs(); }
  //! Bytes on the store's tier (K, V, positions).
  std::size_t tier_bytes() const { return allocated_bytes(k_) + allocated_bytes(v_) + allocated_bytes(pos_); }
  //! Bytes of bookkeeping on the fast tier.
  std::size_t fast_bytes() const { return layout_.fast_bytes() + allocated_bytes(k_base_) + allocated_bytes(v_base_); }

private:
  //! Moves every pair's rows into fresh buffers (of at least `min_rows` rows) laid out with `caps`.
  void relayout_to(const std::vector<std::int64_t>& caps, std::int64_t min_rows, stream_t s) {
    ragged_layout to;
    to.bind(layout_.d_offset.get_allocator().resource());
    to.assign(caps, layout_.length, s);
    relayout(k_, layout_, to, dim_, s, min_rows);
    relayout(v_, layout_, to, dim_, s, min_rows);
    relayout(pos_, layout_, to, 1, s, min_rows);
    layout_ = std::move(to);
    update_bases(s);
  }
  void update_bases(stream_t s) {
    ensure_size(k_base_, layout_.pairs());
    ensure_size(v_base_, layout_.pairs());
    parallel_for(std::int64_t(layout_.pairs()),
                 region_bases<T>{raw(k_), raw(v_), raw(layout_.d_offset), raw(k_base_), raw(v_base_), dim_}, s);
  }

  int dim_;
  std::int64_t reserved_rows_ = 0;
  ragged_layout layout_;
  tier_vector<T, Tier> k_, v_;
  tier_vector<std::int32_t, Tier> pos_;
  fast_vector<const T*> k_base_, v_base_;
};

} // namespace detail
SKV_NAMESPACE_END
