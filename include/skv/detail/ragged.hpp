//! @file detail/ragged.hpp
//! Per-(sequence, KV head) growable rows: the storage layout shared by the token stores and the summaries.
//!
//! Each (sequence, KV head) pair owns one contiguous region of `capacity` items inside a flat buffer, so one head's
//! keys are contiguous (streaming reads, no TLB thrash) and pairs can hold different numbers of items (per-head
//! budgets). Growing or compacting re-lays the regions and frees what is no longer needed.
#pragma once

#include <skv/backend/tier.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Host-side description of the regions, plus a fast-tier copy of the offsets and lengths for functors.
struct ragged_layout {
  std::vector<std::int64_t> offset;   //!< [pairs] first item of each region
  std::vector<std::int64_t> capacity; //!< [pairs] items allocated
  std::vector<std::int64_t> length;   //!< [pairs] items in use
  fast_vector<std::int64_t> d_offset; //!< [pairs] device copy of `offset`
  fast_vector<std::int32_t> d_length; //!< [pairs] device copy of `length`

  std::size_t pairs() const { return offset.size(); }
  std::int64_t total_capacity() const { return offset.empty() ? 0 : offset.back() + capacity.back(); }
  std::int64_t total_length() const {
    std::int64_t n = 0;
    for (auto l : length) n += l;
    return n;
  }

  //! Lays out regions of the given capacities back to back; lengths are set to `lengths`.
  void assign(const std::vector<std::int64_t>& capacities, const std::vector<std::int64_t>& lengths) {
    capacity = capacities;
    length = lengths;
    offset.assign(capacities.size(), 0);
    for (std::size_t p = 1; p < capacities.size(); ++p) offset[p] = offset[p - 1] + capacity[p - 1];
    upload();
  }
  void upload() {
    d_offset.assign(offset.begin(), offset.end());
    std::vector<std::int32_t> len32(length.begin(), length.end());
    d_length.assign(len32.begin(), len32.end());
  }
  void upload_lengths() {
    std::vector<std::int32_t> len32(length.begin(), length.end());
    thrust::copy(len32.begin(), len32.end(), d_length.begin());
  }
};

//! Capacity for `n` items with room to grow by appends before the next re-layout.
inline std::int64_t grown_capacity(std::int64_t n, std::int64_t headroom) {
  const std::int64_t want = n + std::max<std::int64_t>(headroom, n / 4);
  return (want + 15) / 16 * 16;
}

//! Copies rows of width `width` from an old layout to a new one, per pair, up to `count[p]` rows.
template <class T>
struct copy_rows {
  const T* src;
  T* dst;
  const std::int64_t* src_offset;
  const std::int64_t* dst_offset;
  const std::int32_t* count;
  std::int64_t width;
  std::int64_t max_rows;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, r = i % max_rows;
    if (r >= count[p]) return;
    const T* s = src + (src_offset[p] + r) * width;
    T* d = dst + (dst_offset[p] + r) * width;
    for (std::int64_t e = 0; e < width; ++e) d[e] = s[e];
  }
};

//! Moves the contents of `v` (laid out by `from`) into a fresh buffer laid out by `to`, keeping the first
//! `to.length[p]` rows of every pair. The old buffer is released.
template <class Vector>
void relayout(Vector& v, const ragged_layout& from, const ragged_layout& to, std::int64_t width) {
  using T = typename Vector::value_type;
  Vector fresh(static_cast<std::size_t>(to.total_capacity() * width));
  std::int64_t max_rows = 0;
  for (auto l : to.length) max_rows = std::max(max_rows, l);
  if (max_rows > 0 && !v.empty()) {
    parallel_for(
        std::int64_t(to.pairs()) * max_rows,
        copy_rows<T>{raw(v), raw(fresh), raw(from.d_offset), raw(to.d_offset), raw(to.d_length), width, max_rows});
  }
  v.swap(fresh);
}

} // namespace detail
SKV_NAMESPACE_END
