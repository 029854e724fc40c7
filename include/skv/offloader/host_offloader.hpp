//! @file offloader/host_offloader.hpp
//! Retained K/V live on the slow tier (host memory; pinned on CUDA); each step brings the selected tokens into a
//! fast-tier buffer of `max_selected` rows per (sequence, KV head), copying only those not already there from the
//! previous step (SentenceKV's offloading, made real: the official code only masks).
//!
//! Steps that select everything (e.g. SentenceKV's fallback) attend directly over the slow tier instead of filling
//! the buffer: zero-copy over UVA on CUDA, plain reads on the CPU; those bytes count as moved. Traffic is counted
//! per pair on the device and read back only when asked (`take_moved_bytes`, `last_copied`, `last_streamed`).
#pragma once

#include <skv/policy.hpp>

#include <algorithm>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Per pair: map the sorted selection onto buffer slots, reusing resident rows; list the rows to copy; count rows.
struct assign_slots {
  selection sel;
  std::int32_t* res_idx;  // [pairs, cap] resident store indices, increasing
  std::int32_t* res_slot; // [pairs, cap]
  std::int32_t* res_n;    // [pairs]
  std::int32_t* slots;    // [pairs, cap] output: slot of each selected token
  std::uint8_t* used;     // [pairs, cap] scratch
  std::int32_t* copy_src; // [pairs, cap] store index to copy
  std::int32_t* copy_dst; // [pairs, cap] into this slot
  std::int32_t* copy_n;   // [pairs]
  std::int64_t* moved;    // [pairs] rows moved since the last read (copied + streamed)
  std::int32_t* streamed; // [pairs] rows read in place by this step
  std::int64_t cap;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    if (sel.all[p]) {
      copy_n[p] = 0;
      streamed[p] = sel.count[p];
      moved[p] += sel.count[p];
      return;
    }
    streamed[p] = 0;
    const std::int64_t o = p * cap;
    const std::int32_t n = sel.count[p], r = res_n[p];
    const std::int32_t* want = sel.index + p * sel.capacity;
    for (std::int64_t i = 0; i < cap; ++i) used[o + i] = 0;
    std::int32_t i = 0;
    for (std::int32_t j = 0; j < n; ++j) {
      while (i < r && res_idx[o + i] < want[j]) ++i;
      if (i < r && res_idx[o + i] == want[j]) {
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
      copy_src[o + m] = want[j];
      copy_dst[o + m] = std::int32_t(free_slot);
      ++m;
    }
    for (std::int32_t j = 0; j < n; ++j) {
      res_idx[o + j] = want[j];
      res_slot[o + j] = slots[o + j];
    }
    res_n[p] = n;
    copy_n[p] = m;
    moved[p] += m;
  }
};

//! Copies listed rows from the store (slow tier) into the fast buffer; items past a pair's copy count do nothing.
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
  std::int64_t cap;
  int dim;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / cap, m = i % cap;
    if (m >= copy_n[p]) return;
    const std::int64_t src = (store_off[p] + copy_src[p * cap + m]) * dim;
    const std::int64_t dst = (p * cap + copy_dst[p * cap + m]) * dim;
    for (int d = 0; d < dim; ++d) {
      bk[dst + d] = k[src + d];
      bv[dst + d] = v[src + d];
    }
  }
};

//! Per pair: the first row of its part of the fetch buffer.
template <class T>
struct buffer_bases {
  const T* k;
  const T* v;
  const T** k_base;
  const T** v_base;
  std::int64_t rows_per_pair;
  int dim;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    k_base[p] = k + p * rows_per_pair * dim;
    v_base[p] = v + p * rows_per_pair * dim;
  }
};

struct zero_i32 {
  std::int32_t* x;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const { x[i] = 0; }
};
} // namespace detail

//! The store on the slow tier; the selected rows are copied into a fast-tier buffer, reusing what is resident.
class host_offloader {
public:
  struct options {};
  static constexpr tier store_tier = tier::slow;

  host_offloader(const options&, const policy_init& init) : init_(init) {
    memory_resource* mem = init.memory.of(tier::fast);
    for (auto* v : {&k_, &v_}) skv::bind(*v, mem);
    for (auto* v : {&res_idx_, &res_slot_, &res_n_, &slots_, &copy_src_, &copy_dst_, &copy_n_, &streamed_})
      skv::bind(*v, mem);
    skv::bind(used_, mem);
    skv::bind(moved_, mem);
    skv::bind(base_, mem);
  }

  //! Buffers for `max_pairs` pairs of `r.max_selected` rows.
  void reserve(const reservation& r) {
    size_for(r.max_pairs(init_.shape), std::max<std::int64_t>(1, r.max_selected), std::size_t(init_.value_bytes));
    cap_ = 0; // the buffer may have moved: the next fetch recomputes its bases and forgets what was resident
  }

  template <class T>
  fetched_view<T> fetch(const store_view<T>& store, const selection& sel, const layer_info& li) {
    const int P = li.pairs(), D = li.dim();
    const std::int64_t cap = std::max<std::int64_t>(1, sel.capacity);
    row_bytes_ = std::size_t(2) * D * sizeof(T);
    if (cap != cap_ || P != pairs_ || sizeof(T) != elem_) {
      size_for(P, cap, sizeof(T));
      cap_ = cap;
      pairs_ = P;
      elem_ = sizeof(T);
      T* kb = reinterpret_cast<T*>(raw(k_));
      T* vb = reinterpret_cast<T*>(raw(v_));
      parallel_for(P,
                   detail::buffer_bases<T>{kb, vb, reinterpret_cast<const T**>(raw(base_)),
                                           reinterpret_cast<const T**>(raw(base_)) + P, cap, D},
                   li.stream);
      parallel_for(P, detail::zero_i32{raw(res_n_)}, li.stream);
    }
    parallel_for(P,
                 detail::assign_slots{sel, raw(res_idx_), raw(res_slot_), raw(res_n_), raw(slots_), raw(used_),
                                      raw(copy_src_), raw(copy_dst_), raw(copy_n_), raw(moved_), raw(streamed_), cap},
                 li.stream);
    parallel_for(std::int64_t(P) * cap,
                 detail::copy_to_buffer<T>{store.k, store.v, store.offset, reinterpret_cast<T*>(raw(k_)),
                                           reinterpret_cast<T*>(raw(v_)), raw(copy_src_), raw(copy_dst_), raw(copy_n_),
                                           cap, D},
                 li.stream);
    const T* const* bases = reinterpret_cast<const T* const*>(raw(base_));
    return {store.k_base, store.v_base, bases, bases + P, raw(slots_), cap};
  }

  //! Store indices changed meaning (prefill, eviction): nothing in the buffer can be reused.
  void invalidate(const layer_info& li) {
    if (!res_n_.empty()) parallel_for(std::int64_t(res_n_.size()), detail::zero_i32{raw(res_n_)}, li.stream);
  }

  //! Bytes moved slow -> fast since the last call (copies into the buffer and in-place reads); waits for `li.stream`.
  std::size_t take_moved_bytes(const layer_info& li) {
    if (moved_.empty()) return 0;
    synchronize(li.stream);
    std::vector<std::int64_t> m(moved_.size());
    copy_bytes(m.data(), raw(moved_), m.size() * sizeof(std::int64_t), li.stream);
    synchronize(li.stream);
    thrust::fill(detail::on(li.stream), moved_.begin(), moved_.end(), std::int64_t(0));
    std::int64_t rows = 0;
    for (auto x : m) rows += x;
    return std::size_t(rows) * row_bytes_;
  }
  //! Tokens copied into the buffer by the last fetch (waits for the device).
  std::int64_t last_copied(stream_t s = {}) const { return sum(copy_n_, pairs_, s); }
  //! Tokens the last fetch left on the slow tier for attention to read in place (waits for the device).
  std::int64_t last_streamed(stream_t s = {}) const { return sum(streamed_, pairs_, s); }

  std::size_t bytes() const {
    std::size_t b = allocated_bytes(k_) + allocated_bytes(v_) + allocated_bytes(used_) + allocated_bytes(moved_) +
                    allocated_bytes(base_);
    for (auto* v : {&res_idx_, &res_slot_, &res_n_, &slots_, &copy_src_, &copy_dst_, &copy_n_, &streamed_})
      b += allocated_bytes(*v);
    return b;
  }

private:
  void size_for(int P, std::int64_t cap, std::size_t elem) {
    const std::size_t rows = std::size_t(P) * std::size_t(cap);
    ensure_size(k_, rows * init_.shape.head_dim * elem);
    ensure_size(v_, rows * init_.shape.head_dim * elem);
    for (auto* v : {&res_idx_, &res_slot_, &slots_, &copy_src_, &copy_dst_}) ensure_size(*v, rows);
    for (auto* v : {&res_n_, &copy_n_, &streamed_}) ensure_size(*v, std::size_t(P));
    ensure_size(used_, rows);
    if (moved_.size() < std::size_t(P)) {
      resize(moved_, std::size_t(P));
      thrust::fill(moved_.begin(), moved_.end(), std::int64_t(0));
    }
    ensure_size(base_, std::size_t(2) * P);
  }
  template <class V>
  static std::int64_t sum(const V& v, int n, stream_t s) {
    synchronize(s);
    std::vector<std::int32_t> h{};
    h.resize(std::size_t(n));
    copy_bytes(h.data(), raw(v), h.size() * sizeof(std::int32_t), s);
    synchronize(s);
    std::int64_t total = 0;
    for (auto x : h) total += x;
    return total;
  }

  policy_init init_;
  fast_vector<std::uint8_t> k_, v_; //!< the buffer, typed by the storage type only at fetch: kept as bytes
  fast_vector<std::int32_t> res_idx_, res_slot_, res_n_, slots_, copy_src_, copy_dst_, copy_n_, streamed_;
  fast_vector<std::uint8_t> used_;
  fast_vector<std::int64_t> moved_;
  fast_vector<const void*> base_; //!< [2, pairs] first key / value row of each pair's buffer
  std::int64_t cap_ = 0;
  int pairs_ = 0;
  std::size_t elem_ = 0, row_bytes_ = 0;
};

SKV_NAMESPACE_END
