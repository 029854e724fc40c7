//! @file offloader/host_offloader.hpp
//! Retained K/V live on the slow tier (host memory; pinned on CUDA); each step brings the selected tokens into a
//! fast-tier buffer of `budget` rows per (sequence, KV head), copying only those not already there from the
//! previous step (SentenceKV's offloading, made real: the official code only masks).
//!
//! Steps that select everything (e.g. SentenceKV's fallback) attend directly over the slow tier instead of
//! filling the buffer: zero-copy over UVA on CUDA, plain reads on the CPU; those bytes count as moved.
#pragma once

#include <skv/detail/layer_state.hpp>

#include <algorithm>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Per pair: map the sorted selection onto buffer slots, reusing resident rows; list the rows to copy.
struct assign_slots {
  const std::int32_t* sel; // [pairs, cap] store indices, increasing
  const std::int32_t* sel_count;
  const std::uint8_t* sel_all;
  std::int32_t* res_idx;  // [pairs, cap] resident store indices, increasing
  std::int32_t* res_slot; // [pairs, cap]
  std::int32_t* res_n;    // [pairs]
  std::int32_t* slots;    // [pairs, cap] output: slot of each selected token
  std::uint8_t* used;     // [pairs, cap] scratch
  std::int32_t* copy_src; // [pairs, cap] store index to copy
  std::int32_t* copy_dst; // [pairs, cap] into this slot
  std::int32_t* copy_n;   // [pairs]
  std::int64_t cap;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    if (sel_all[p]) {
      copy_n[p] = 0;
      return;
    }
    const std::int64_t o = p * cap;
    const std::int32_t n = sel_count[p], r = res_n[p];
    for (std::int64_t i = 0; i < cap; ++i) used[o + i] = 0;
    std::int32_t i = 0;
    for (std::int32_t j = 0; j < n; ++j) {
      const std::int32_t want = sel[o + j];
      while (i < r && res_idx[o + i] < want) ++i;
      if (i < r && res_idx[o + i] == want) {
        slots[o + j] = res_slot[o + i];
        used[o + res_slot[o + i]] = 1;
      } else {
        slots[o + j] = -1;
      }
    }
    std::int32_t m = 0;
    std::int64_t free_slot = 0;
    for (std::int32_t j = 0; j < n; ++j) {
      if (slots[o + j] >= 0) continue;
      while (used[o + free_slot]) ++free_slot;
      used[o + free_slot] = 1;
      slots[o + j] = std::int32_t(free_slot);
      copy_src[o + m] = sel[o + j];
      copy_dst[o + m] = std::int32_t(free_slot);
      ++m;
    }
    for (std::int32_t j = 0; j < n; ++j) {
      res_idx[o + j] = sel[o + j];
      res_slot[o + j] = slots[o + j];
    }
    res_n[p] = n;
    copy_n[p] = m;
  }
};

//! Copies listed rows from the store (slow tier) into the fast buffer.
template <class T>
struct copy_to_buffer {
  const T* k;
  const T* v;
  const std::int64_t* store_off;
  T* bk;
  T* bv;
  const std::int32_t* copy_src;
  const std::int32_t* copy_dst;
  const std::int32_t* copy_n;
  std::int64_t cap, max_m;
  int dim;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_m, m = i % max_m;
    if (m >= copy_n[p]) return;
    const std::int64_t src = (store_off[p] + copy_src[p * cap + m]) * dim;
    const std::int64_t dst = (p * cap + copy_dst[p * cap + m]) * dim;
    for (int d = 0; d < dim; ++d) {
      bk[dst + d] = k[src + d];
      bv[dst + d] = v[src + d];
    }
  }
};

} // namespace detail

struct host_offloader {
  struct options {};
  static constexpr tier store_tier = tier::slow;

  host_offloader() = default;
  explicit host_offloader(const options&) {}

  template <class L>
  void fetch(L& l) {
    using T = typename L::value_type;
    const int P = l.pairs(), D = l.dim();
    const std::int64_t cap = std::max<std::int64_t>(1, l.sel.capacity);
    const std::size_t buffer_bytes = std::size_t(P * cap * D) * sizeof(T);
    if (cap != cap_ || P != pairs_ || l.store_epoch != epoch_ || k_.size() != buffer_bytes) {
      cap_ = cap;
      pairs_ = P;
      epoch_ = l.store_epoch;
      release(k_);
      release(v_);
      resize(k_, buffer_bytes);
      resize(v_, buffer_bytes);
      res_idx_.assign(std::size_t(P * cap), 0);
      res_slot_.assign(std::size_t(P * cap), 0);
      res_n_.assign(P, 0);
      slots_.assign(std::size_t(P * cap), 0);
      used_.assign(std::size_t(P * cap), 0);
      copy_src_.assign(std::size_t(P * cap), 0);
      copy_dst_.assign(std::size_t(P * cap), 0);
      copy_n_.assign(P, 0);
    }
    // the buffer is typed by the cache's storage type, known only here: it is kept as bytes
    T* kbuf = reinterpret_cast<T*>(raw(k_));
    T* vbuf = reinterpret_cast<T*>(raw(v_));
    detail::parallel_for(P, detail::assign_slots{raw(l.sel.index), raw(l.sel.count), raw(l.sel.all), raw(res_idx_),
                                                 raw(res_slot_), raw(res_n_), raw(slots_), raw(used_), raw(copy_src_),
                                                 raw(copy_dst_), raw(copy_n_), cap});
    std::vector<std::int32_t> copies(P);
    thrust::copy(copy_n_.begin(), copy_n_.end(), copies.begin());
    std::int64_t max_m = 0, copied = 0, streamed = 0;
    for (int p = 0; p < P; ++p) {
      max_m = std::max<std::int64_t>(max_m, copies[p]);
      copied += copies[p];
      if (l.sel.all_host[p]) streamed += l.sel.count_host[p];
    }
    if (max_m > 0)
      detail::parallel_for(
          P * max_m, detail::copy_to_buffer<T>{raw(l.store.k), raw(l.store.v), raw(l.store.layout.d_offset), kbuf, vbuf,
                                               raw(copy_src_), raw(copy_dst_), raw(copy_n_), cap, max_m, D});
    const std::size_t row_bytes = std::size_t(2) * D * sizeof(T);
    l.moved_to_fast += std::size_t(copied + streamed) * row_bytes;
    last_copied_ = copied;
    last_streamed_ = streamed;
    std::vector<const T*> kb(P), vb(P);
    for (int p = 0; p < P; ++p) {
      const bool all = l.sel.all_host[p];
      kb[p] = all ? raw(l.store.k) + l.store.layout.offset[p] * D : kbuf + p * cap * D;
      vb[p] = all ? raw(l.store.v) + l.store.layout.offset[p] * D : vbuf + p * cap * D;
    }
    l.fetched.k_base.assign(kb.begin(), kb.end());
    l.fetched.v_base.assign(vb.begin(), vb.end());
    l.fetched.slots = raw(slots_);
    l.fetched.slot_stride = cap;
  }

  void reset() { epoch_ = ~std::uint64_t(0); }

  //! Tokens copied into the buffer by the last fetch, and tokens read from the slow tier in place.
  std::int64_t last_copied() const { return last_copied_; }
  std::int64_t last_streamed() const { return last_streamed_; }

  std::size_t bytes() const {
    return allocated_bytes(k_) + allocated_bytes(v_) + allocated_bytes(res_idx_) + allocated_bytes(res_slot_) +
           allocated_bytes(res_n_) + allocated_bytes(slots_) + allocated_bytes(used_) + allocated_bytes(copy_src_) +
           allocated_bytes(copy_dst_) + allocated_bytes(copy_n_);
  }

private:
  fast_vector<std::uint8_t> k_, v_;
  fast_vector<std::int32_t> res_idx_, res_slot_, res_n_, slots_, copy_src_, copy_dst_, copy_n_;
  fast_vector<std::uint8_t> used_;
  std::int64_t cap_ = 0, last_copied_ = 0, last_streamed_ = 0;
  int pairs_ = 0;
  std::uint64_t epoch_ = ~std::uint64_t(0);
};

SKV_NAMESPACE_END
