//! @file detail/ragged.hpp
//! Per-(sequence, KV head) growable rows: the storage layout shared by the token store and the segment table.
//!
//! Each pair owns one contiguous region of `capacity` rows inside a flat buffer, so one head's keys are contiguous
//! (streaming reads, no TLB thrash) and pairs can hold different numbers of rows (per-head budgets). The host keeps
//! the layout; the fast tier keeps a copy of the offsets and the lengths, which decode-time kernels update in place.
#pragma once

#include <skv/backend/stream.hpp>
#include <skv/backend/tier.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Copies `src` into the fast-tier vector `dst` (resized to fit), ordered on `s`.
template <class Vector, class U>
void upload(Vector& dst, const std::vector<U>& src, stream_t s) {
  using T = typename Vector::value_type;
  static_assert(sizeof(T) == sizeof(U), "upload: element types must match in size");
  ensure_size(dst, src.size());
  copy_bytes(raw(dst), src.data(), src.size() * sizeof(T), s);
}

struct ragged_layout {
  std::vector<std::int64_t> offset;   //!< [pairs] first row of each region
  std::vector<std::int64_t> capacity; //!< [pairs] rows allocated
  std::vector<std::int64_t> length;   //!< [pairs] rows in use
  fast_vector<std::int64_t> d_offset; //!< [pairs] device copy of `offset`
  fast_vector<std::int32_t> d_length; //!< [pairs] device copy of `length` (kernels keep it current)

  void bind(memory_resource* fast) {
    skv::bind(d_offset, fast);
    skv::bind(d_length, fast);
  }
  std::size_t pairs() const { return offset.size(); }
  std::int64_t total_capacity() const { return offset.empty() ? 0 : offset.back() + capacity.back(); }
  std::int64_t max_length() const {
    std::int64_t m = 0;
    for (auto l : length) m = std::max(m, l);
    return m;
  }
  std::size_t fast_bytes() const { return allocated_bytes(d_offset) + allocated_bytes(d_length); }

  //! Lays out regions of the given capacities back to back with the given lengths (host and device).
  void assign(const std::vector<std::int64_t>& capacities, const std::vector<std::int64_t>& lengths, stream_t s) {
    capacity = capacities;
    length = lengths;
    offset.assign(capacities.size(), 0);
    for (std::size_t p = 1; p < capacities.size(); ++p) offset[p] = offset[p - 1] + capacity[p - 1];
    upload(d_offset, offset, s);
    upload_lengths(s);
  }
  void upload_lengths(stream_t s) {
    const std::vector<std::int32_t> len32(length.begin(), length.end());
    upload(d_length, len32, s);
    synchronize(s); // len32 is pageable and goes out of scope
  }
};

//! Capacity for `n` rows with room to grow before the next re-layout.
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

//! Moves the contents of `v` (laid out by `from`) into a fresh buffer from the same resource laid out by `to` (of at
//! least `min_rows` rows), keeping the first `to.length[p]` rows of every pair. The old buffer is released.
template <class Vector>
void relayout(Vector& v, const ragged_layout& from, const ragged_layout& to, std::int64_t width, stream_t s,
              std::int64_t min_rows = 0) {
  using T = typename Vector::value_type;
  const std::int64_t rows = std::max(to.total_capacity(), min_rows);
  Vector fresh(static_cast<std::size_t>(rows * width), T(), v.get_allocator());
  const std::int64_t max_rows = to.max_length();
  if (max_rows > 0 && !v.empty())
    parallel_for(
        std::int64_t(to.pairs()) * max_rows,
        copy_rows<T>{raw(v), raw(fresh), raw(from.d_offset), raw(to.d_offset), raw(to.d_length), width, max_rows}, s);
  synchronize(s);
  v.swap(fresh);
}

} // namespace detail
SKV_NAMESPACE_END
