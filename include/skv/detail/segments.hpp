//! @file detail/segments.hpp
//! Functors that keep the segment table in step with the store: each closed segment's retained range, and its
//! summary.
#pragma once

#include <skv/detail/layer_state.hpp>

SKV_NAMESPACE_BEGIN
namespace detail {

//! First index in the sorted `pos[0, n)` whose value is >= `value`.
SKV_HOST_DEVICE inline std::int64_t lower_bound_pos(const std::int32_t* pos, std::int64_t n, std::int64_t value) {
  std::int64_t lo = 0, hi = n;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (pos[mid] < value)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

//! For pair p and segment rows [from[p], rows[p]): the store range of the segment's retained tokens.
struct locate_segments {
  const std::int32_t* begins;    //!< concatenated closed-segment begins of all sequences
  const std::int64_t* begin_off; //!< [batch] first entry of each sequence in `begins`
  const std::int64_t* partial;   //!< [batch] open segment's first position (end of the last closed one)
  const std::int32_t* pos;       //!< store positions
  const std::int64_t* store_off; //!< [pairs]
  const std::int32_t* store_len; //!< [pairs]
  const std::int64_t* seg_off;   //!< [pairs]
  const std::int32_t* from;      //!< [pairs] first row to compute
  const std::int32_t* rows;      //!< [pairs] closed segments
  std::int32_t* first;
  std::int32_t* count;
  int kv_heads;
  std::int64_t max_rows;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, s = from[p] + i % max_rows;
    if (s >= rows[p]) return;
    const std::int64_t b = p / kv_heads;
    const std::int32_t* bs = begins + begin_off[b];
    const std::int64_t lo = bs[s], hi = s + 1 < rows[p] ? bs[s + 1] : partial[b];
    const std::int32_t* ps = pos + store_off[p];
    const std::int64_t a = lower_bound_pos(ps, store_len[p], lo), e = lower_bound_pos(ps, store_len[p], hi);
    first[seg_off[p] + s] = std::int32_t(a);
    count[seg_off[p] + s] = std::int32_t(e - a);
  }
};

//! Summarizes segment rows [from[p], rows[p]) of every pair with `Sum`, reading keys from the store.
template <class Sum, class T>
struct summarize_segments {
  const T* keys; //!< store keys
  const std::int64_t* store_off;
  const std::int64_t* seg_off;
  const std::int32_t* from;
  const std::int32_t* rows;
  const std::int32_t* first;
  const std::int32_t* count;
  T* summary;
  int dim;
  std::int64_t max_rows;
  struct key_rows {
    const T* base;
    int dim;
    SKV_HOST_DEVICE const T* operator()(int i) const { return base + std::int64_t(i) * dim; }
  };
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, s = from[p] + i % max_rows;
    if (s >= rows[p]) return;
    const std::int64_t row = seg_off[p] + s;
    T* out = summary + row * Sum::vectors * dim;
    const int n = count[row];
    if (n == 0) {
      for (int e = 0; e < Sum::vectors * dim; ++e) out[e] = from_float<T>(0.f);
      return;
    }
    Sum::template summarize<T>(key_rows{keys + (store_off[p] + first[row]) * dim, dim}, n, dim, out);
  }
};

} // namespace detail
SKV_NAMESPACE_END
