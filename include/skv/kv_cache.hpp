//! @file kv_cache.hpp
//! `skv::kv_cache`: one generic KV cache composed of a segmenter, a summarizer, a selector and an offloader.
#pragma once

#include <skv/attention/attention_weights.hpp>
#include <skv/attention/decode_attention.hpp>
#include <skv/concepts.hpp>
#include <skv/detail/segments.hpp>
#include <skv/detail/validate.hpp>
#include <skv/error.hpp>
#include <skv/ledger.hpp>
#include <skv/numeric.hpp>

#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#if defined(_OPENMP)
#  include <omp.h>
#endif

SKV_NAMESPACE_BEGIN

//! Prefill inputs of one layer for a ragged batch (FlashInfer-style packed rows).
template <class Src>
struct prefill_args {
  std::span<const std::int32_t>
      indptr; //!< [batch_size + 1] host: packed rows of sequence b are [indptr[b], indptr[b+1])
  std::span<const std::int32_t> token_ids; //!< [num_rows] host: token ids of the packed rows
  std::int64_t num_rows = 0;               //!< rows of k / v / q (= indptr[batch_size])
  tensor_view<const Src> k;                //!< [rows, num_kv_heads, head_dim] post-RoPE keys
  tensor_view<const Src> v;                //!< [rows, num_kv_heads, head_dim] values
  tensor_view<const Src> q;                //!< [rows, num_q_heads, head_dim] post-RoPE queries; only the last
                                           //!< `kv_cache::window()` rows of each sequence are read; may be null
                                           //!< when `window() == 0`
  int num_q_heads = 0;                     //!< heads of `q` as the engine lays them out
  int num_kv_heads = 0;                    //!< heads of `k` / `v`
  int head_dim = 0;
};

//! One decoded token per sequence.
template <class Src>
struct decode_args {
  std::span<const std::int32_t> token_ids; //!< [batch_size] host: one id per sequence
  tensor_view<const Src> k;                //!< [batch_size, num_kv_heads, head_dim]
  tensor_view<const Src> v;                //!< [batch_size, num_kv_heads, head_dim]
  tensor_view<const Src> q;                //!< [batch_size, num_q_heads, head_dim]
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

//! A selection exported to host vectors: CSR over pairs p = sequence * num_kv_heads + kv_head, holding logical
//! token positions (0-based within the sequence), increasing within a pair.
struct selection_csr {
  std::vector<std::int32_t> indptr;  //!< [pairs + 1]
  std::vector<std::int32_t> indices; //!< [indptr.back()]
};

namespace detail {
//! Copies `q` ([batch, heads, dim] view) into a dense float buffer, times `scale`.
template <class Src>
struct load_queries {
  tensor_view<const Src> q;
  float* out;
  int heads, dim;
  float scale;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t b = i / heads, h = i % heads;
    const Src* s = q.at(b, h);
    for (int d = 0; d < dim; ++d) out[i * dim + d] = to_float(s[d]) * scale;
  }
};
//! Adds the new queries to the partial-segment sums, resetting the sequences whose last token closed a segment.
struct accumulate_partial {
  const float* q;
  float* sum;
  const std::uint8_t* reset;
  int heads, dim;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t b = i / (std::int64_t(heads) * dim);
    sum[i] = reset[b] ? q[i] : sum[i] + q[i];
  }
};
//! Writes one decoded token per pair at the end of its store region.
template <class T, class Src>
struct append_token {
  tensor_view<const Src> k_in, v_in;
  T* k;
  T* v;
  std::int32_t* pos;
  const std::int64_t* off;
  const std::int32_t* len; // lengths before the append
  const std::int64_t* position;
  int kv_heads, dim;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int64_t b = p / kv_heads, h = p % kv_heads, dst = off[p] + len[p];
    const Src* ks = k_in.at(b, h);
    const Src* vs = v_in.at(b, h);
    for (int d = 0; d < dim; ++d) {
      k[dst * dim + d] = from_float<T>(to_float(ks[d]));
      v[dst * dim + d] = from_float<T>(to_float(vs[d]));
    }
    pos[dst] = std::int32_t(position[b]);
  }
};
//! Export: logical positions of the selected tokens.
template <class PosPtr>
struct export_positions {
  const std::int32_t* pos; // store positions
  const std::int64_t* store_off;
  const std::int32_t* sel_index;
  const std::int32_t* sel_count;
  const std::uint8_t* sel_all;
  std::int64_t sel_cap;
  const std::int64_t* out_off; // [pairs] first output entry (CSR) or row start (padded)
  std::int32_t* out;
  std::int64_t max_n;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_n, j = i % max_n;
    if (j >= sel_count[p]) return;
    const std::int64_t row = sel_all[p] ? j : sel_index[p * sel_cap + j];
    out[out_off[p] + j] = pos[store_off[p] + row];
  }
};
template <class T>
struct keep_rows {
  const T* k;
  const T* v;
  const std::int32_t* pos;
  const std::int64_t* off;
  T* nk;
  T* nv;
  std::int32_t* npos;
  const std::int64_t* noff;
  const std::int64_t* keep_off;
  const std::int32_t* keep;
  int dim;
  std::int64_t max_rows;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, r = i % max_rows;
    if (r >= keep_off[p + 1] - keep_off[p]) return;
    const std::int64_t src = off[p] + keep[keep_off[p] + r], dst = noff[p] + r;
    for (int d = 0; d < dim; ++d) {
      nk[dst * dim + d] = k[src * dim + d];
      nv[dst * dim + d] = v[src * dim + d];
    }
    npos[dst] = pos[src];
  }
};
struct scale_by {
  float s;
  SKV_HOST_DEVICE float operator()(float x) const { return x * s; }
};
} // namespace detail

//! The generic KV cache. One instance holds every layer of one batch of sequences.
//! @tparam Seg segmenter, @tparam Sum summarizer, @tparam Sel selector, @tparam Off offloader (see concepts.hpp)
//! @tparam T  storage type of K/V: float, skv::half or skv::bfloat16 (attention accumulates in float)
template <segmenter Seg, summarizer Sum, selector Sel, offloader Off, storage_type T = bfloat16>
class kv_cache {
  static_assert(!Sel::needs_summaries || Sum::vectors > 0,
                "skv::kv_cache: this selector ranks segments by their summaries, but the summarizer produces none "
                "(Sum::vectors == 0): use mean_key_summarizer or minmax_key_summarizer");

public:
  using segmenter_type = Seg;
  using summarizer_type = Sum;
  using selector_type = Sel;
  using offloader_type = Off;
  using value_type = T;
  static constexpr tier store_tier = Off::store_tier;
  //! Whether the cache keeps a per-segment table (store ranges, summaries) on the fast tier: only when something
  //! reads it. Segment boundaries themselves are always tracked (host side).
  static constexpr bool tracks_segments = Sel::needs_summaries || Sum::vectors > 0;
  using layer_type = detail::layer_state<T, store_tier, Sum>;

  //! Options of the cache: each policy's own options, nested, plus the cache's.
  struct options {
    typename Seg::options segmenter{};
    typename Sel::options selector{};
    typename Off::options offloader{};
    float softmax_scale = 0.f; //!< 0: 1 / sqrt(head_dim)
#if defined(NDEBUG)
    bool check_values = false; //!< reject non-finite K/V/Q (an extra pass over the inputs)
#else
    bool check_values = true;
#endif
  };

  explicit kv_cache(const model_shape& shape, const options& opts = {}) : shape_(shape), opts_(opts) {
    constexpr const char* where = "skv::kv_cache";
    detail::require(shape.num_layers >= 1, where, "num_layers", shape.num_layers, ">= 1");
    detail::require(shape.num_kv_heads >= 1, where, "num_kv_heads", shape.num_kv_heads, ">= 1");
    detail::require(shape.num_q_heads >= 1 && shape.num_q_heads % shape.num_kv_heads == 0, where, "num_q_heads",
                    shape.num_q_heads,
                    "a positive multiple of num_kv_heads (" + std::to_string(shape.num_kv_heads) + ")");
    detail::require(detail::dispatch_head_dim(shape.head_dim, [](auto) {}), where, "head_dim", shape.head_dim,
                    detail::supported_head_dims_text);
    detail::require(opts.softmax_scale >= 0.f && std::isfinite(opts.softmax_scale), where, "softmax_scale",
                    opts.softmax_scale, "a finite value >= 0 (0 = 1/sqrt(head_dim))");
    Seg(opts.segmenter).validate();
    for (int l = 0; l < shape.num_layers; ++l) {
      sel_.emplace_back(opts.selector, l, shape.num_layers);
      sel_.back().validate(shape);
      off_.emplace_back(opts.offloader);
      layers_.emplace_back();
    }
    seg_.emplace(opts.segmenter);
  }

  const model_shape& shape() const { return shape_; }
  const options& opts() const { return opts_; }
  //! Prompt queries (per sequence, the last ones) the policies read at prefill of `layer`; 0 = none.
  int window(int layer = 0) const { return sel_.at(check_layer(layer, "skv::kv_cache::window")).window(); }
  //! Batch size of `layer`'s current prefill (0 before it).
  int batch_size(int layer) const { return layers_.at(check_layer(layer, "skv::kv_cache::batch_size")).batch; }
  //! Logical length of sequence `seq` in `layer`: prompt plus appended tokens.
  std::int64_t length(int layer, int seq) const {
    const auto& L = prefilled_layer(layer, "skv::kv_cache::length");
    detail::require(seq >= 0 && seq < L.batch, "skv::kv_cache::length", "seq", seq,
                    "[0, " + std::to_string(L.batch) + ")");
    return L.seqs[seq].n_tokens;
  }
  //! Tokens retained (on either tier) for sequence `seq`, KV head `head` of `layer`.
  std::int64_t retained(int layer, int seq, int head) const {
    const auto& L = prefilled_layer(layer, "skv::kv_cache::retained");
    return L.store.length(std::size_t(seq) * shape_.num_kv_heads + head);
  }
  //! Closed segments of sequence `seq` in `layer`.
  std::vector<std::int32_t> segment_begins(int layer, int seq) const {
    return prefilled_layer(layer, "skv::kv_cache::segment_begins").seqs.at(seq).seg_begin;
  }
  //! Read access to a layer's state (tests, tools, custom policies).
  const layer_type& layer_state(int layer) const {
    return layers_.at(check_layer(layer, "skv::kv_cache::layer_state"));
  }
  Sel& selector(int layer) { return sel_.at(check_layer(layer, "skv::kv_cache::selector")); }
  Off& offloader(int layer) { return off_.at(check_layer(layer, "skv::kv_cache::offloader")); }

  //! Drops every layer's contents (memory is released).
  void reset() {
    last_keep_ = {};
    last_keep_layer_ = -2;
    for (int l = 0; l < shape_.num_layers; ++l) {
      layers_[l] = layer_type{};
      sel_[l] = Sel(opts_.selector, l, shape_.num_layers);
      off_[l] = Off(opts_.offloader);
    }
  }

  //! Stores a prompt batch for `layer`, replacing what the layer held. The selector decides what is retained,
  //! the offloader's tier receives it, segments are formed and summarized.
  template <class Src>
  void prefill(int layer, const prefill_args<Src>& a) {
    constexpr const char* where = "skv::kv_cache::prefill";
    check_layer(layer, where);
    validate_prefill(a, layer, where);
    Sel& sel = sel_[layer];
    layer_type next;
    const int batch = int(a.indptr.size()) - 1;
    init_layer(next, layer, batch);
    detail::prefill_input<Src> in{a.k, a.v, a.q, {}, {}};
    for (int b = 0; b < batch; ++b) {
      in.seq_row.push_back(a.indptr[b]);
      in.seq_len.push_back(a.indptr[b + 1] - a.indptr[b]);
      auto& s = next.seqs[b];
      std::int64_t open = 0;
      for (std::int32_t t = 0; t < in.seq_len[b]; ++t) {
        if (open == 0) s.seg_begin.push_back(t);
        ++open;
        if (seg_->closes(a.token_ids[a.indptr[b] + t], open)) open = 0;
      }
      s.n_tokens = s.partial_begin = in.seq_len[b]; // the prompt tail closes the last segment
    }
    detail::index_lists keep;
    if (last_keep_layer_ == layer - 1 && layer > 0) {
      next.previous_keep = &last_keep_;
      next.previous_keep_lengths = last_keep_lengths_;
    }
    sel.retain_prefill(next, in, keep);
    store_prefill(next, in, keep);
    rebuild_segments(next);
    next.prefilled = true;
    next.previous_keep = nullptr;
    off_[layer].reset();
    layers_[layer] = std::move(next);
    if constexpr (requires(const Sel& s) { s.reuses(); }) { // only selectors that reuse indices pay for this
      last_keep_ = std::move(keep);
      last_keep_lengths_ = in.seq_len;
      last_keep_layer_ = layer;
    }
  }

  //! Appends one decoded token per sequence to `layer`: K/V join the store, the query joins the open segment,
  //! a segment may close (and is summarized), and the selector may evict.
  template <class Src>
  void append(int layer, const decode_args<Src>& a) {
    constexpr const char* where = "skv::kv_cache::append";
    layer_type& L = prefilled_layer(layer, where);
    validate_decode(a, L, where);
    const int P = L.pairs(), H = shape_.num_kv_heads;
    // K/V
    L.store.reserve_append(1);
    std::vector<std::int64_t> position(L.batch);
    for (int b = 0; b < L.batch; ++b) position[b] = L.seqs[b].n_tokens;
    fast_vector<std::int64_t> d_position(position.begin(), position.end());
    detail::parallel_for(P, detail::append_token<T, Src>{a.k, a.v, raw(L.store.k), raw(L.store.v), raw(L.store.pos),
                                                         raw(L.store.layout.d_offset), raw(L.store.layout.d_length),
                                                         raw(d_position), H, shape_.head_dim});
    for (int p = 0; p < P; ++p) ++L.store.layout.length[p];
    L.store.layout.upload_lengths();
    if (store_tier == tier::slow) L.moved_to_slow += std::size_t(P) * L.token_bytes();
    // queries
    load_q(L, a.q);
    std::vector<std::uint8_t> reset(L.batch);
    for (int b = 0; b < L.batch; ++b) {
      auto& s = L.seqs[b];
      reset[b] = s.closed_last || s.partial_queries == 0;
      s.partial_queries = reset[b] ? 1 : s.partial_queries + 1;
      s.closed_last = false;
    }
    fast_vector<std::uint8_t> d_reset(reset.begin(), reset.end());
    detail::parallel_for(std::int64_t(L.q.size()), detail::accumulate_partial{raw(L.q), raw(L.q_partial), raw(d_reset),
                                                                              shape_.num_q_heads, shape_.head_dim});
    // segments
    bool closed_any = false;
    for (int b = 0; b < L.batch; ++b) {
      auto& s = L.seqs[b];
      ++s.n_tokens;
      if (seg_->closes(a.token_ids[b], s.n_tokens - s.partial_begin)) {
        s.seg_begin.push_back(std::int32_t(s.partial_begin));
        s.partial_begin = s.n_tokens;
        s.closed_last = closed_any = true;
      }
    }
    if (closed_any) update_segments(L, false);
    // eviction
    detail::index_lists keep;
    if (sel_[layer].retain_append(L, keep)) evict(L, keep, layer);
    L.sel.valid = false;
  }

  //! Chooses the tokens `layer` attends to for the current decode query (the one given to `append`).
  void select(int layer) {
    layer_type& L = prefilled_layer(layer, "skv::kv_cache::select");
    detail::require(L.q.size() > 0, "skv::kv_cache::select", "layer", layer,
                    "a layer that has a decode query: call append() first");
    sel_[layer].select(L);
    L.sel.download();
    off_[layer].fetch(L);
    L.sel.valid = true;
  }

  //! Exact softmax attention of the current decode query over the selected tokens (float accumulation).
  //! @param out [batch, num_q_heads, head_dim] view, of float or the storage type
  template <class O>
  void attend(int layer, tensor_view<O> out) {
    constexpr const char* where = "skv::kv_cache::attend";
    layer_type& L = prefilled_layer(layer, where);
    detail::require(out.data != nullptr, where, "out.data", "null", "a pointer to [batch, num_q_heads, head_dim]");
    if (!L.sel.valid) select(layer);
    const int P = L.pairs(), G = L.group(), D = L.dim();
    const int gblocks = (G + detail::attend_group_block - 1) / detail::attend_group_block;
    std::int32_t max_n = 1;
    for (auto c : L.sel.count_host) max_n = std::max(max_n, c);
    const std::int64_t lanes = std::int64_t(P) * gblocks;
    const std::int64_t want_items = 8 * parallelism();
    const std::int64_t chunks_wanted = std::max<std::int64_t>(1, (want_items + lanes - 1) / lanes);
    const int chunk = int(std::max<std::int64_t>(256, (max_n + chunks_wanted - 1) / chunks_wanted));
    const int chunks = (max_n + chunk - 1) / chunk;
    const std::int64_t items = lanes * chunks;
    resize(q_scaled_, L.q.size());
    const float scale = softmax_scale();
    thrust::transform(thrust::device, L.q.begin(), L.q.end(), q_scaled_.begin(), detail::scale_by{scale});
    resize(part_ml_, std::size_t(items) * detail::attend_group_block * 2);
    resize(part_acc_, std::size_t(items) * detail::attend_group_block * D);
    detail::attend_params<T> prm{raw(q_scaled_),
                                 raw(L.fetched.k_base),
                                 raw(L.fetched.v_base),
                                 L.fetched.slots,
                                 raw(L.sel.count),
                                 raw(L.sel.all),
                                 L.fetched.slot_stride,
                                 shape_.num_kv_heads,
                                 G,
                                 chunk,
                                 chunks,
                                 gblocks,
                                 raw(part_ml_),
                                 raw(part_acc_)};
    detail::dispatch_head_dim(D, [&](auto d) {
      constexpr int DD = decltype(d)::value;
      detail::parallel_for(items, detail::attend_partial<T, DD>{prm});
      detail::parallel_for(std::int64_t(P) * G, detail::attend_merge<O, DD>{raw(part_ml_), raw(part_acc_), out,
                                                                            shape_.num_kv_heads, G, chunks, gblocks});
    });
    if constexpr (requires(Sel & s, const fast_vector<float>& p, std::int64_t stride) { s.observe(L, p, stride); }) {
      // selectors that learn from attention (H2O) get each selected token's weight, summed over the query group
      resize(probs_, std::size_t(P) * max_n);
      resize(logits_, std::size_t(P) * max_n);
      detail::dispatch_head_dim(D, [&](auto d) {
        detail::parallel_for(P, detail::attention_weights<T, decltype(d)::value>{
                                    raw(q_scaled_), raw(L.fetched.k_base), L.fetched.slots, raw(L.sel.count),
                                    raw(L.sel.all), L.fetched.slot_stride, raw(probs_), raw(logits_), max_n, G});
      });
      sel_[layer].observe(L, probs_, max_n);
    }
  }

  //! append + select + attend for one decode step of `layer`.
  template <class Src, class O>
  void step(int layer, const decode_args<Src>& a, tensor_view<O> out) {
    append(layer, a);
    select(layer);
    attend(layer, out);
  }

  //! Selected tokens of `layer` in total, and the most for one (sequence, KV head) pair.
  std::int64_t selection_nnz(int layer) { return selected_layer(layer, "skv::kv_cache::selection_nnz").sel.nnz(); }
  std::int32_t selection_max(int layer) {
    const auto& c = selected_layer(layer, "skv::kv_cache::selection_max").sel.count_host;
    return c.empty() ? 0 : *std::max_element(c.begin(), c.end());
  }

  //! Exports the current selection of `layer` as CSR over pairs (sequence-major, then KV head) of logical token
  //! positions. `indptr`: [pairs + 1], `indices`: [selection_nnz(layer)]; device pointers on CUDA.
  void export_csr(int layer, std::int32_t* indptr, std::int32_t* indices) {
    constexpr const char* where = "skv::kv_cache::export_csr";
    layer_type& L = selected_layer(layer, where);
    detail::require(indptr != nullptr, where, "indptr", "null", "a pointer to pairs + 1 int32");
    detail::require(indices != nullptr || L.sel.nnz() == 0, where, "indices", "null", "a pointer to nnz int32");
    std::vector<std::int64_t> off(L.pairs() + 1, 0);
    for (int p = 0; p < L.pairs(); ++p) off[p + 1] = off[p] + L.sel.count_host[p];
    std::vector<std::int32_t> off32(off.begin(), off.end());
    thrust::copy(off32.begin(), off32.end(), thrust::device_pointer_cast(indptr));
    write_positions(L, off, indices);
  }
  //! Exports as a `-1`-padded table [pairs, width] (width >= selection_max(layer)) plus valid lengths [pairs].
  void export_padded(int layer, std::int32_t* table, std::int64_t width, std::int32_t* lengths) {
    constexpr const char* where = "skv::kv_cache::export_padded";
    layer_type& L = selected_layer(layer, where);
    const std::int32_t need = selection_max(layer);
    detail::require(width >= need, where, "width", width, ">= selection_max(layer) = " + std::to_string(need));
    detail::require(table != nullptr && lengths != nullptr, where, "table/lengths", "null", "non-null pointers");
    thrust::fill_n(thrust::device, thrust::device_pointer_cast(table), std::int64_t(L.pairs()) * width, -1);
    thrust::copy(L.sel.count.begin(), L.sel.count.end(), thrust::device_pointer_cast(lengths));
    std::vector<std::int64_t> off(L.pairs());
    for (int p = 0; p < L.pairs(); ++p) off[p] = std::int64_t(p) * width;
    write_positions(L, off, table);
  }
  //! Host convenience: the current selection of `layer` as host vectors.
  selection_csr selection(int layer) {
    layer_type& L = selected_layer(layer, "skv::kv_cache::selection");
    selection_csr s;
    s.indptr.resize(L.pairs() + 1);
    fast_vector<std::int32_t> indptr(L.pairs() + 1), indices(std::max<std::int64_t>(1, L.sel.nnz()));
    export_csr(layer, raw(indptr), raw(indices));
    thrust::copy(indptr.begin(), indptr.end(), s.indptr.begin());
    s.indices.resize(L.sel.nnz());
    thrust::copy_n(indices.begin(), s.indices.size(), s.indices.begin());
    return s;
  }

  //! Bytes resident per tier now, and bytes moved between tiers since the last call (which resets them).
  memory_ledger ledger() {
    memory_ledger m;
    for (int l = 0; l < shape_.num_layers; ++l) {
      auto& L = layers_[l];
      (store_tier == tier::fast ? m.fast_bytes : m.slow_bytes) += L.store.bytes();
      m.fast_bytes += L.segs.bytes() + L.sel.bytes() + allocated_bytes(L.q) + allocated_bytes(L.q_partial) +
                      allocated_bytes(L.fetched.k_base) + allocated_bytes(L.fetched.v_base) +
                      allocated_bytes(L.store.layout.d_offset) + allocated_bytes(L.store.layout.d_length) +
                      sel_[l].bytes() + off_[l].bytes();
      m.moved_to_fast += std::exchange(L.moved_to_fast, 0);
      m.moved_to_slow += std::exchange(L.moved_to_slow, 0);
    }
    m.fast_bytes += allocated_bytes(q_scaled_) + allocated_bytes(part_ml_) + allocated_bytes(part_acc_) +
                    allocated_bytes(probs_) + allocated_bytes(logits_) + allocated_bytes(last_keep_.index) + allocated_bytes(last_keep_.d_offset);
    return m;
  }

  float softmax_scale() const {
    return opts_.softmax_scale > 0.f ? opts_.softmax_scale : 1.f / std::sqrt(float(shape_.head_dim));
  }

private:
  static std::int64_t parallelism() {
#if defined(SKV_BACKEND_CUDA)
    return 1024;
#elif defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
  }

  int check_layer(int layer, const char* where) const {
    detail::require(layer >= 0 && layer < shape_.num_layers, where, "layer", layer,
                    "[0, " + std::to_string(shape_.num_layers) + ")");
    return layer;
  }
  layer_type& prefilled_layer(int layer, const char* where) {
    layer_type& L = layers_[check_layer(layer, where)];
    if (!L.prefilled)
      throw skv::logic_error(std::string(where) + ": layer " + std::to_string(layer) +
                             " holds no prompt: call prefill() for it first");
    return L;
  }
  const layer_type& prefilled_layer(int layer, const char* where) const {
    return const_cast<kv_cache*>(this)->prefilled_layer(layer, where);
  }
  layer_type& selected_layer(int layer, const char* where) {
    layer_type& L = prefilled_layer(layer, where);
    if (!L.sel.valid)
      throw skv::logic_error(std::string(where) + ": layer " + std::to_string(layer) +
                             " has no current selection: call select() (or attend()) after append()");
    return L;
  }

  template <class Src>
  void validate_prefill(const prefill_args<Src>& a, int layer, const char* where) const {
    detail::require(a.indptr.size() >= 2, where, "indptr.size()", a.indptr.size(),
                    ">= 2 (batch_size + 1, batch_size >= 1)");
    detail::check_heads(a.num_q_heads, a.num_kv_heads, a.head_dim, shape_, where);
    detail::require(a.indptr[0] == 0, where, "indptr[0]", a.indptr[0], "0");
    const int batch = int(a.indptr.size()) - 1;
    for (int b = 0; b < batch; ++b) {
      const std::int64_t n = std::int64_t(a.indptr[b + 1]) - a.indptr[b];
      if (n < 1)
        detail::throw_invalid(where,
                              ("indptr[" + std::to_string(b + 1) + "] - indptr[" + std::to_string(b) + "]").c_str(), n,
                              ">= 1 (an empty prompt cannot be prefilled)");
    }
    detail::require(a.num_rows == a.indptr[batch], where, "num_rows", a.num_rows,
                    "indptr[batch_size] = " + std::to_string(a.indptr[batch]) + " (rows of k and v)");
    detail::require(std::int64_t(a.token_ids.size()) == a.num_rows, where, "token_ids.size()", a.token_ids.size(),
                    std::to_string(a.num_rows) + " (one id per K/V row)");
    detail::require(a.k.data != nullptr, where, "k.data", "null", "a pointer to [rows, num_kv_heads, head_dim]");
    detail::require(a.v.data != nullptr, where, "v.data", "null", "a pointer to [rows, num_kv_heads, head_dim]");
    const int w = sel_[layer].window();
    detail::require(w == 0 || a.q.data != nullptr, where, "q.data", "null",
                    "the prompt queries: the selector reads the last " + std::to_string(w) + " of each sequence");
    if (opts_.check_values) {
      detail::check_finite(a.k, a.num_rows, shape_.num_kv_heads, shape_.head_dim, where, "k");
      detail::check_finite(a.v, a.num_rows, shape_.num_kv_heads, shape_.head_dim, where, "v");
      if (w > 0) detail::check_finite(a.q, a.num_rows, shape_.num_q_heads, shape_.head_dim, where, "q");
    }
  }

  template <class Src>
  void validate_decode(const decode_args<Src>& a, const layer_type& L, const char* where) const {
    detail::require(std::int64_t(a.token_ids.size()) == L.batch, where, "token_ids.size()", a.token_ids.size(),
                    std::to_string(L.batch) + " (one token per sequence of the prefilled batch)");
    detail::check_heads(a.num_q_heads, a.num_kv_heads, a.head_dim, shape_, where);
    detail::require(a.k.data != nullptr, where, "k.data", "null", "a pointer to [batch, num_kv_heads, head_dim]");
    detail::require(a.v.data != nullptr, where, "v.data", "null", "a pointer to [batch, num_kv_heads, head_dim]");
    detail::require(a.q.data != nullptr, where, "q.data", "null", "a pointer to [batch, num_q_heads, head_dim]");
    for (int b = 0; b < L.batch; ++b)
      detail::require(L.seqs[b].n_tokens < std::int64_t(INT32_MAX), where, "length", L.seqs[b].n_tokens,
                      "< 2^31 - 1 tokens per sequence");
    if (opts_.check_values) {
      detail::check_finite(a.k, L.batch, shape_.num_kv_heads, shape_.head_dim, where, "k");
      detail::check_finite(a.v, L.batch, shape_.num_kv_heads, shape_.head_dim, where, "v");
      detail::check_finite(a.q, L.batch, shape_.num_q_heads, shape_.head_dim, where, "q");
    }
  }

  void init_layer(layer_type& L, int layer, int batch) const {
    L.layer = layer;
    L.num_layers = shape_.num_layers;
    L.shape = shape_;
    L.batch = batch;
    L.seqs.assign(batch, {});
    L.store.dim = shape_.head_dim;
    L.segs.vectors = Sum::vectors;
  }

  template <class Src>
  void store_prefill(layer_type& L, const detail::prefill_input<Src>& in, const detail::index_lists& keep) {
    const int P = L.pairs();
    std::vector<std::int64_t> caps(P), lens(P);
    std::int64_t max_rows = 0, kept = 0;
    for (int p = 0; p < P; ++p) {
      lens[p] = keep.offset[p + 1] - keep.offset[p];
      caps[p] = detail::grown_capacity(lens[p], 64);
      max_rows = std::max(max_rows, lens[p]);
      kept += lens[p];
    }
    L.store.layout.assign(caps, lens);
    const auto total = std::size_t(L.store.layout.total_capacity());
    resize(L.store.k, total * L.dim());
    resize(L.store.v, total * L.dim());
    resize(L.store.pos, total);
    fast_vector<std::int64_t> first(P, 0), seq_row(in.seq_row.begin(), in.seq_row.end());
    detail::parallel_for(std::int64_t(P) * max_rows,
                         detail::gather_into_store<T, Src>{in.k, in.v, raw(L.store.k), raw(L.store.v), raw(L.store.pos),
                                                           raw(L.store.layout.d_offset), raw(first), raw(keep.d_offset),
                                                           raw(keep.index), raw(seq_row), L.kv_heads(), L.dim(),
                                                           max_rows});
    if (store_tier == tier::slow) L.moved_to_slow += std::size_t(kept) * L.token_bytes();
  }

  //! Recomputes the segment table from scratch (after prefill or eviction).
  void rebuild_segments(layer_type& L) {
    if constexpr (!tracks_segments) return;
    const int P = L.pairs();
    std::vector<std::int64_t> caps(P), lens(P);
    for (int p = 0; p < P; ++p) {
      lens[p] = std::int64_t(L.seqs[p / L.kv_heads()].seg_begin.size());
      caps[p] = detail::grown_capacity(lens[p], 16);
    }
    L.segs.layout.assign(caps, lens);
    const auto rows = std::size_t(L.segs.layout.total_capacity());
    L.segs.first.assign(rows, 0);
    L.segs.count.assign(rows, 0);
    resize(L.segs.summary, rows * Sum::vectors * L.dim());
    update_segments(L, true);
  }

  //! Locates and summarizes segment rows: all of them (`all`) or the ones closed since the last call.
  void update_segments(layer_type& L, bool all) {
    if constexpr (!tracks_segments) return;
    const int P = L.pairs(), H = L.kv_heads();
    auto& lay = L.segs.layout;
    std::vector<std::int32_t> from(P), rows(P);
    bool grow = false;
    for (int p = 0; p < P; ++p) {
      rows[p] = std::int32_t(L.seqs[p / H].seg_begin.size());
      from[p] = all ? 0 : std::int32_t(lay.length[p]);
      grow |= rows[p] > lay.capacity[p];
    }
    if (grow) {
      std::vector<std::int64_t> caps(P);
      for (int p = 0; p < P; ++p) caps[p] = std::max(lay.capacity[p], detail::grown_capacity(rows[p], 16));
      detail::ragged_layout to;
      to.assign(caps, lay.length);
      detail::relayout(L.segs.first, lay, to, 1);
      detail::relayout(L.segs.count, lay, to, 1);
      detail::relayout(L.segs.summary, lay, to, std::int64_t(Sum::vectors) * L.dim());
      lay = std::move(to);
    }
    for (int p = 0; p < P; ++p) lay.length[p] = rows[p];
    lay.upload_lengths();
    std::int64_t max_rows = 0;
    for (int p = 0; p < P; ++p) max_rows = std::max<std::int64_t>(max_rows, rows[p] - from[p]);
    if (max_rows == 0) return;
    std::vector<std::int32_t> begins;
    std::vector<std::int64_t> begin_off(L.batch), partial(L.batch);
    for (int b = 0; b < L.batch; ++b) {
      begin_off[b] = std::int64_t(begins.size());
      begins.insert(begins.end(), L.seqs[b].seg_begin.begin(), L.seqs[b].seg_begin.end());
      partial[b] = L.seqs[b].partial_begin;
    }
    fast_vector<std::int32_t> d_begins(begins.begin(), begins.end()), d_from(from.begin(), from.end()),
        d_rows(rows.begin(), rows.end());
    fast_vector<std::int64_t> d_begin_off(begin_off.begin(), begin_off.end()),
        d_partial(partial.begin(), partial.end());
    detail::parallel_for(std::int64_t(P) * max_rows,
                         detail::locate_segments{raw(d_begins), raw(d_begin_off), raw(d_partial), raw(L.store.pos),
                                                 raw(L.store.layout.d_offset), raw(L.store.layout.d_length),
                                                 raw(lay.d_offset), raw(d_from), raw(d_rows), raw(L.segs.first),
                                                 raw(L.segs.count), H, max_rows});
    if constexpr (Sum::vectors > 0) {
      detail::parallel_for(std::int64_t(P) * max_rows,
                           detail::summarize_segments<Sum, T>{raw(L.store.k), raw(L.store.layout.d_offset),
                                                              raw(lay.d_offset), raw(d_from), raw(d_rows),
                                                              raw(L.segs.first), raw(L.segs.count), raw(L.segs.summary),
                                                              L.dim(), max_rows});
    }
  }

  //! Keeps only the store indices in `keep` (per pair, sorted) and frees the rest for real.
  void evict(layer_type& L, const detail::index_lists& keep, int layer) {
    const int P = L.pairs();
    std::vector<std::int64_t> caps(P), lens(P);
    std::int64_t max_rows = 0;
    for (int p = 0; p < P; ++p) {
      lens[p] = keep.offset[p + 1] - keep.offset[p];
      caps[p] = detail::grown_capacity(lens[p], 16);
      max_rows = std::max(max_rows, lens[p]);
    }
    detail::token_store<T, store_tier> next;
    next.dim = L.dim();
    next.layout.assign(caps, lens);
    const auto total = std::size_t(next.layout.total_capacity());
    resize(next.k, total * L.dim());
    resize(next.v, total * L.dim());
    resize(next.pos, total);
    detail::parallel_for(std::int64_t(P) * max_rows,
                         detail::keep_rows<T>{raw(L.store.k), raw(L.store.v), raw(L.store.pos),
                                              raw(L.store.layout.d_offset), raw(next.k), raw(next.v), raw(next.pos),
                                              raw(next.layout.d_offset), raw(keep.d_offset), raw(keep.index), L.dim(),
                                              max_rows});
    L.store = std::move(next);
    ++L.store_epoch;
    rebuild_segments(L);
    off_[layer].reset();
  }

  template <class Src>
  void load_q(layer_type& L, tensor_view<const Src> q) {
    resize(L.q, std::size_t(L.batch) * shape_.num_q_heads * shape_.head_dim);
    if (L.q_partial.size() != L.q.size()) L.q_partial.assign(L.q.size(), 0.f);
    detail::parallel_for(std::int64_t(L.batch) * shape_.num_q_heads,
                         detail::load_queries<Src>{q, raw(L.q), shape_.num_q_heads, shape_.head_dim, 1.f});
  }

  void write_positions(layer_type& L, const std::vector<std::int64_t>& off, std::int32_t* out) {
    const std::int64_t max_n = std::max<std::int64_t>(1, selection_max(L.layer));
    fast_vector<std::int64_t> d_off(off.begin(), off.end());
    detail::parallel_for(std::int64_t(L.pairs()) * max_n,
                         detail::export_positions<std::int32_t*>{raw(L.store.pos), raw(L.store.layout.d_offset),
                                                                 raw(L.sel.index), raw(L.sel.count), raw(L.sel.all),
                                                                 L.sel.capacity, raw(d_off), out, max_n});
  }

  model_shape shape_;
  options opts_;
  std::optional<Seg> seg_;
  std::vector<Sel> sel_;
  std::vector<Off> off_;
  std::vector<layer_type> layers_;
  fast_vector<float> q_scaled_, part_ml_, part_acc_; //!< attention scratch, reused across calls
  fast_vector<float> probs_, logits_;                //!< attention weights for selectors that observe them
  detail::index_lists last_keep_;                    //!< what the last prefilled layer retained (positions)
  std::vector<std::int32_t> last_keep_lengths_;
  int last_keep_layer_ = -2;
};

SKV_NAMESPACE_END
