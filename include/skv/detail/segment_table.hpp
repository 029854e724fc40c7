//! @file detail/segment_table.hpp
//! The closed segments of one layer: per (sequence, KV head), each segment's first position, where its retained
//! tokens sit in the store, and its summary (fast tier). Kept in step with the store at prefill, when a decoded
//! token closes a segment, and after an eviction.
#pragma once

#include <skv/concepts.hpp>
#include <skv/detail/projection.hpp>
#include <skv/detail/ragged.hpp>
#include <skv/detail/sketch.hpp>
#include <skv/numeric.hpp>
#include <skv/policy.hpp>

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

//! Locates segment `row` (positions [lo, hi)) of pair `p` in the store and summarizes its retained keys.
template <class Sum, class T>
struct segment_locator {
  const T* keys;
  const std::int32_t* pos;
  const std::int64_t* store_off;
  const std::int32_t* store_len;
  std::int32_t* first;
  std::int32_t* count;
  T* summary;
  std::uint8_t* sketch; //!< [row, dim] (sketched summarizers)
  float* sketch_meta;   //!< [row, sketch_meta_width]
  std::int8_t* projection;  //!< [row, rank] (projected summarizers)
  float* projection_scale;  //!< [row]
  const float* basis;       //!< [pairs, rank, dim]
  int dim, rank;
  struct key_rows {
    const T* base;
    int dim;
    SKV_HOST_DEVICE const T* operator()(int i) const { return base + std::int64_t(i) * dim; }
  };
  SKV_HOST_DEVICE void operator()(std::int64_t p, std::int64_t row, std::int64_t lo, std::int64_t hi) const {
    const std::int32_t* ps = pos + store_off[p];
    const std::int64_t a = lower_bound_pos(ps, store_len[p], lo), e = lower_bound_pos(ps, store_len[p], hi);
    first[row] = std::int32_t(a);
    count[row] = std::int32_t(e - a);
    if constexpr (Sum::vectors > 0) {
      T* out = summary + row * Sum::vectors * dim;
      if (e == a)
        for (int x = 0; x < Sum::vectors * dim; ++x) out[x] = from_float<T>(0.f);
      else
        Sum::template summarize<T>(key_rows{keys + (store_off[p] + a) * dim, dim}, int(e - a), dim, out);
      if constexpr (sketched_summarizer<Sum>) encode_sketch(out, dim, sketch + row * dim, sketch_meta + row * sketch_meta_width);
      if constexpr (projected_summarizer<Sum>)
        project_summary(basis + p * rank * dim, out, dim, rank, projection + row * rank, projection_scale + row);
    }
  }
};

//! Every row of every pair: segment s ends where s + 1 begins, the last one at the open segment's start.
template <class Sum, class T>
struct locate_all {
  segment_locator<Sum, T> at;
  const std::int32_t* begin;
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* partial_begin; //!< [batch]
  int kv_heads;
  std::int64_t max_rows;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, s = i % max_rows;
    if (s >= rows[p]) return;
    const std::int64_t row = seg_off[p] + s;
    const std::int64_t hi = s + 1 < rows[p] ? begin[row + 1] : partial_begin[p / kv_heads];
    at(p, row, begin[row], hi);
  }
};

//! The segment closed by this step's token, if any: positions [closed_begin[b], position[b] + 1).
template <class Sum, class T>
struct locate_closed {
  segment_locator<Sum, T> at;
  std::int32_t* begin;
  const std::int64_t* seg_off;
  std::int32_t* rows;
  const std::int32_t* closed_begin; //!< [batch] -1: nothing closed
  const std::int32_t* position;     //!< [batch]
  int kv_heads;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int64_t b = p / kv_heads;
    if (closed_begin[b] < 0) return;
    const std::int64_t row = seg_off[p] + rows[p];
    begin[row] = closed_begin[b];
    at(p, row, closed_begin[b], std::int64_t(position[b]) + 1);
    rows[p] += 1;
  }
};

//! Every row of every pair projected onto its pair's basis again (after prefill computed the bases).
template <class T>
struct project_all {
  const T* summary;
  const float* basis;
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  std::int8_t* projection;
  float* projection_scale;
  int dim, rank;
  std::int64_t max_rows;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, s = i % max_rows;
    if (s >= rows[p]) return;
    const std::int64_t row = seg_off[p] + s;
    project_summary(basis + p * rank * dim, summary + row * dim, dim, rank, projection + row * rank,
                    projection_scale + row);
  }
};

template <class T, class Sum>
class segment_table {
public:
  explicit segment_table(int dim, const tier_resources& mem) : dim_(dim), rank_(rank_of(dim)) {
    layout_.bind(mem.of(tier::fast));
    for (auto* v : {&begin_, &first_, &count_}) skv::bind(*v, mem.of(tier::fast));
    skv::bind(summary_, mem.of(tier::fast));
    skv::bind(sketch_, mem.of(tier::fast));
    skv::bind(sketch_meta_, mem.of(tier::fast));
    skv::bind(projection_, mem.of(tier::fast));
    skv::bind(projection_scale_, mem.of(tier::fast));
    skv::bind(basis_, mem.of(tier::fast));
    skv::bind(basis_rows_, mem.of(tier::fast));
  }

  //! Room for `max_pairs` pairs of `rows_per_pair` segments; a table that holds rows is re-laid with it now.
  void reserve(int max_pairs, std::int64_t rows_per_pair, stream_t s) {
    reserved_rows_ = rows_per_pair;
    const std::int64_t rows = std::int64_t(max_pairs) * rows_per_pair;
    if (layout_.pairs() > 0) {
      std::vector<std::int64_t> caps(layout_.pairs());
      for (std::size_t p = 0; p < caps.size(); ++p) caps[p] = std::max(layout_.capacity[p], rows_per_pair);
      relayout_to(caps, rows, s);
    } else {
      for (auto* v : {&begin_, &first_, &count_}) ensure_size(*v, std::size_t(rows));
      ensure_size(summary_, std::size_t(rows) * Sum::vectors * dim_);
      ensure_sketch(std::size_t(rows));
    }
    ensure_basis(std::size_t(max_pairs));
    for (auto* h : {&layout_.offset, &layout_.capacity, &layout_.length}) h->reserve(max_pairs);
    ensure_size(layout_.d_offset, max_pairs);
    ensure_size(layout_.d_length, max_pairs);
  }

  //! Prefill: one row per closed segment of each sequence (begins from the host), located and summarized.
  template <class Store>
  void build(std::span<const sequence_state> seqs, int kv_heads, const Store& store, const std::int32_t* partial_begin,
             stream_t s) {
    const std::size_t P = seqs.size() * kv_heads;
    std::vector<std::int64_t> caps(P), lens(P);
    for (std::size_t p = 0; p < P; ++p) {
      lens[p] = std::int64_t(seqs[p / kv_heads].segment_begins.size());
      caps[p] = lens[p] < reserved_rows_ ? reserved_rows_ : grown_capacity(lens[p], 16);
    }
    layout_.assign(caps, lens, s);
    const auto rows = std::size_t(layout_.total_capacity());
    for (auto* v : {&begin_, &first_, &count_}) ensure_size(*v, rows);
    ensure_size(summary_, rows * Sum::vectors * dim_);
    ensure_sketch(rows);
    ensure_basis(P);
    std::vector<std::int32_t> begins(rows, 0);
    for (std::size_t p = 0; p < P; ++p) {
      const auto& b = seqs[p / kv_heads].segment_begins;
      std::copy(b.begin(), b.end(), begins.begin() + layout_.offset[p]);
    }
    upload(begin_, begins, s);
    relocate(store, partial_begin, kv_heads, s);
    if constexpr (projected) build_bases(s);
    synchronize(s); // `begins` is pageable
  }

  //! Whether every pair can take one more row without a re-layout (host check).
  bool fits_one() const {
    for (std::size_t p = 0; p < layout_.pairs(); ++p)
      if (layout_.length[p] + 1 > layout_.capacity[p]) return false;
    return true;
  }
  void grow(stream_t s) {
    std::vector<std::int64_t> caps(layout_.pairs());
    for (std::size_t p = 0; p < caps.size(); ++p)
      caps[p] = std::max(layout_.capacity[p], grown_capacity(layout_.length[p] + 1, 16));
    relayout_to(caps, 0, s);
  }

  //! Decode: appends the segment each sequence's token closed (device: `closed_begin`, `position` per sequence);
  //! `closed_host[b]` says the same on the host.
  template <class Store>
  void close(const Store& store, const std::int32_t* closed_begin, const std::int32_t* position,
             std::span<const std::uint8_t> closed_host, int kv_heads, stream_t s) {
    parallel_for(std::int64_t(layout_.pairs()),
                 locate_closed<Sum, T>{locator(store), raw(begin_), raw(layout_.d_offset), raw(layout_.d_length),
                                       closed_begin, position, kv_heads},
                 s);
    for (std::size_t p = 0; p < layout_.pairs(); ++p) layout_.length[p] += closed_host[p / kv_heads];
  }

  //! Locates and summarizes every row again (after prefill or an eviction changed the store).
  template <class Store>
  void relocate(const Store& store, const std::int32_t* partial_begin, int kv_heads, stream_t s) {
    const std::int64_t max_rows = layout_.max_length();
    if (max_rows == 0) return;
    parallel_for(std::int64_t(layout_.pairs()) * max_rows,
                 locate_all<Sum, T>{locator(store), raw(begin_), raw(layout_.d_offset), raw(layout_.d_length),
                                    partial_begin, kv_heads, max_rows},
                 s);
  }

  segment_view<T> view() const {
    return {Sum::vectors,
            layout_.total_capacity(),
            raw(layout_.d_offset),
            raw(layout_.d_length),
            raw(begin_),
            raw(first_),
            raw(count_),
            raw(summary_),
            sketched ? raw(sketch_) : nullptr,
            sketched ? raw(sketch_meta_) : nullptr,
            rank_,
            projected ? raw(projection_) : nullptr,
            projected ? raw(projection_scale_) : nullptr,
            projected ? raw(basis_) : nullptr,
            projected ? raw(basis_rows_) : nullptr,
            layout_.length};
  }
  std::size_t fast_bytes() const {
    return layout_.fast_bytes() + allocated_bytes(begin_) + allocated_bytes(first_) + allocated_bytes(count_) +
           allocated_bytes(summary_) + allocated_bytes(sketch_) + allocated_bytes(sketch_meta_) +
           allocated_bytes(projection_) + allocated_bytes(projection_scale_) + allocated_bytes(basis_) +
           allocated_bytes(basis_rows_);
  }
  std::int64_t rows(std::size_t p) const { return layout_.length[p]; }

private:
  void relayout_to(const std::vector<std::int64_t>& caps, std::int64_t min_rows, stream_t s) {
    ragged_layout to;
    to.bind(layout_.d_offset.get_allocator().resource());
    to.assign(caps, layout_.length, s);
    relayout(begin_, layout_, to, 1, s, min_rows);
    relayout(first_, layout_, to, 1, s, min_rows);
    relayout(count_, layout_, to, 1, s, min_rows);
    relayout(summary_, layout_, to, std::int64_t(Sum::vectors) * dim_, s, min_rows);
    if constexpr (sketched) {
      relayout(sketch_, layout_, to, dim_, s, min_rows);
      relayout(sketch_meta_, layout_, to, sketch_meta_width, s, min_rows);
    }
    if constexpr (projected) {
      relayout(projection_, layout_, to, rank_, s, min_rows);
      relayout(projection_scale_, layout_, to, 1, s, min_rows);
    }
    layout_ = std::move(to);
  }
  template <class Store>
  segment_locator<Sum, T> locator(const Store& store) {
    const auto v = store.view();
    return {v.k,           v.position,   v.offset,          v.length,         raw(first_),
            raw(count_),   raw(summary_), raw(sketch_),      raw(sketch_meta_), raw(projection_),
            raw(projection_scale_), raw(basis_), dim_, rank_};
  }
  //! Prefill, projected summarizers: each pair's basis from its summaries (on the host: the summaries come down,
  //! the bases go up), then every row projected onto it.
  void build_bases(stream_t s) {
    const std::size_t P = layout_.pairs(), D = std::size_t(dim_), R = std::size_t(rank_);
    std::vector<T> summaries(std::size_t(layout_.total_capacity()) * D);
    copy_bytes(summaries.data(), raw(summary_), summaries.size() * sizeof(T), s);
    synchronize(s);
    std::vector<float> rows, basis(P * R * D);
    std::vector<std::int32_t> used(P);
    for (std::size_t p = 0; p < P; ++p) {
      const std::int64_t n = layout_.length[p];
      rows.resize(std::size_t(n) * D);
      for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = to_float(summaries[std::size_t(layout_.offset[p]) * D + i]);
      used[p] = dominant_subspace(rows.data(), n, dim_, rank_, basis.data() + p * R * D);
    }
    upload(basis_, basis, s);
    upload(basis_rows_, used, s);
    const std::int64_t max_rows = layout_.max_length();
    if (max_rows > 0)
      parallel_for(std::int64_t(P) * max_rows,
                   project_all<T>{raw(summary_), raw(basis_), raw(layout_.d_offset), raw(layout_.d_length),
                                  raw(projection_), raw(projection_scale_), dim_, rank_, max_rows},
                   s);
    synchronize(s); // `basis` and `used` are pageable
  }
  void ensure_basis(std::size_t pairs) {
    if constexpr (projected) {
      ensure_size(basis_, pairs * std::size_t(rank_) * dim_);
      ensure_size(basis_rows_, pairs);
    }
  }
  static int rank_of(int dim) {
    if constexpr (projected_summarizer<Sum>)
      return dim / Sum::projection_divisor;
    else
      return 0;
  }
  void ensure_sketch(std::size_t rows) {
    if constexpr (sketched) {
      ensure_size(sketch_, rows * dim_);
      ensure_size(sketch_meta_, rows * sketch_meta_width);
    }
    if constexpr (projected) {
      ensure_size(projection_, rows * rank_);
      ensure_size(projection_scale_, rows);
    }
  }

  static constexpr bool sketched = sketched_summarizer<Sum>;
  static constexpr bool projected = projected_summarizer<Sum>;

  int dim_, rank_;
  std::int64_t reserved_rows_ = 0;
  ragged_layout layout_;
  fast_vector<std::int32_t> begin_, first_, count_;
  fast_vector<T> summary_;
  fast_vector<std::uint8_t> sketch_;
  fast_vector<float> sketch_meta_;
  fast_vector<std::int8_t> projection_;
  fast_vector<float> projection_scale_;
  fast_vector<float> basis_;
  fast_vector<std::int32_t> basis_rows_;
};

} // namespace detail
SKV_NAMESPACE_END
