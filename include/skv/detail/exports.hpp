//! @file detail/exports.hpp
//! The current selection in the formats engines consume: CSR over pairs, or a `-1`-padded table with lengths, of
//! logical token positions; written on the device without reading anything back.
#pragma once

#include <skv/args.hpp>
#include <skv/policy.hpp>

#include <thrust/fill.h>

SKV_NAMESPACE_BEGIN
namespace detail {

//! indptr[0] = 0, indptr[p + 1] = indptr[p] + count[p] (one item: pairs are few).
struct scan_counts {
  const std::int32_t* count;
  std::int32_t* indptr;
  int pairs;
  SKV_HOST_DEVICE void operator()(std::int64_t) const {
    std::int32_t s = 0;
    indptr[0] = 0;
    for (int p = 0; p < pairs; ++p) indptr[p + 1] = s += count[p];
  }
};

//! out[start + j] = position of the j-th selected token of pair p, where start = indptr[p] (CSR) or p * width.
struct write_positions {
  const std::int32_t* pos;
  const std::int64_t* store_off;
  const std::int32_t* index;
  const std::int32_t* count;
  const std::uint8_t* all;
  std::int64_t capacity;
  const std::int32_t* indptr; //!< null: padded rows of `width`
  std::int64_t width;
  std::int32_t* out;
  std::int64_t max_n;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_n, j = i % max_n;
    if (j >= count[p]) return;
    const std::int64_t row = all[p] ? j : index[p * capacity + j];
    out[(indptr != nullptr ? std::int64_t(indptr[p]) : p * width) + j] = pos[store_off[p] + row];
  }
};

//! CSR: `indptr` [pairs + 1], `indices` [>= sum of the bounds] (device memory on CUDA).
template <class T>
void export_csr(const store_view<T>& store, const selection& sel, std::int64_t max_bound, int pairs,
                std::int32_t* indptr, std::int32_t* indices, stream_t s) {
  const std::int64_t n = std::max<std::int64_t>(1, max_bound);
  parallel_for(1, scan_counts{sel.count, indptr, pairs}, s);
  parallel_for(
      std::int64_t(pairs) * n,
      write_positions{store.position, store.offset, sel.index, sel.count, sel.all, sel.capacity, indptr, 0, indices, n},
      s);
}

//! Padded: `table` [pairs, width] holds -1 past each pair's `lengths[p]` (device memory on CUDA).
template <class T>
void export_padded(const store_view<T>& store, const selection& sel, std::int64_t max_bound, int pairs,
                   std::int32_t* table, std::int64_t width, std::int32_t* lengths, stream_t s) {
  const std::int64_t n = std::max<std::int64_t>(1, max_bound);
  thrust::fill_n(on(s), thrust::device_pointer_cast(table), std::int64_t(pairs) * width, -1);
  copy_bytes(lengths, sel.count, std::size_t(pairs) * sizeof(std::int32_t), s);
  parallel_for(std::int64_t(pairs) * n,
               write_positions{store.position, store.offset, sel.index, sel.count, sel.all, sel.capacity, nullptr,
                               width, table, n},
               s);
}

//! Downloads a CSR export into host vectors (waits for `s`): `indptr` / `indices` are device scratch of the export's
//! sizes.
inline selection_csr download_csr(const std::int32_t* indptr, const std::int32_t* indices, int pairs, stream_t s) {
  selection_csr c;
  c.indptr.resize(pairs + 1);
  copy_bytes(c.indptr.data(), indptr, c.indptr.size() * sizeof(std::int32_t), s);
  synchronize(s);
  c.indices.resize(c.indptr.back());
  copy_bytes(c.indices.data(), indices, c.indices.size() * sizeof(std::int32_t), s);
  synchronize(s);
  return c;
}

} // namespace detail
SKV_NAMESPACE_END
