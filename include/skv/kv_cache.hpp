//! @file kv_cache.hpp
//! `skv::kv_cache`: one generic KV cache composed of a segmenter, a summarizer, a selector and an offloader.
//!
//! The cache itself only sequences its parts (docs/design.md draws the data flow): the token store, the segment
//! table, the sequences' bookkeeping, the attention, the exports and the ledger each live in their own file, and
//! the policies see them only through the typed views of policy.hpp.
#pragma once

#include <skv/args.hpp>
#include <skv/concepts.hpp>
#include <skv/detail/cache_layer.hpp>
#include <skv/detail/decode_attention.hpp>
#include <skv/detail/exports.hpp>
#include <skv/detail/validate.hpp>
#include <skv/error.hpp>
#include <skv/ledger.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

SKV_NAMESPACE_BEGIN

//! The generic KV cache. One instance holds every layer of one batch of sequences.
//! @tparam Seg segmenter, @tparam Sum summarizer, @tparam Sel selector, @tparam Off offloader (see concepts.hpp)
//! @tparam T  storage type of K/V: float, skv::half or skv::bfloat16 (attention accumulates in float)
template <segmenter Seg, summarizer Sum, selector Sel, offloader Off, storage_type T = bfloat16>
class kv_cache {
  static_assert(!Sel::needs_summaries || Sum::vectors > 0,
                "skv::kv_cache: this selector ranks segments by their summaries, but the summarizer produces none "
                "(Sum::vectors == 0): use mean_key_summarizer or minmax_key_summarizer");
  using layer_t = detail::cache_layer<T, Sum, Sel, Off>;
  using seq_field = detail::sequence_table;

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

  //! Options of the cache: each policy's own options, nested, plus the cache's.
  struct options {
    typename Seg::options segmenter{}; //!< the segmenter's own options
    typename Sel::options selector{};  //!< the selector's (for composed_selector: budget, retention, choice)
    typename Off::options offloader{}; //!< the offloader's
    float softmax_scale = 0.f;         //!< scale of q . k in every softmax (prefill scoring too); 0: 1/sqrt(head_dim)
    memory_resource* fast_memory = nullptr; //!< where fast-tier buffers come from; null: default_resource(tier::fast)
    memory_resource* slow_memory = nullptr; //!< where slow-tier buffers come from; null: default_resource(tier::slow)
#if defined(NDEBUG)
    bool check_values = false; //!< reject non-finite K/V/Q (an extra pass over the inputs that waits on the host)
#else
    bool check_values = true;
#endif
  };

  explicit kv_cache(const model_shape& shape, const options& opts = {})
      : shape_(shape), opts_(opts), seg_(opts.segmenter), attention_(memory()),
        guide_(std::make_unique<detail::layer_guide>()) {
    skv::bind(guide_->mass, memory().of(tier::fast));
    skv::bind(guide_->rows, memory().of(tier::fast));
    detail::validate_shape(shape, opts.softmax_scale, "skv::kv_cache");
    if constexpr (projected_summarizer<Sum>)
      detail::require(shape.head_dim % Sum::projection_divisor == 0, "skv::kv_cache", "head_dim", shape.head_dim,
                      [] { return "a multiple of the summarizer's projection_divisor (" +
                                  std::to_string(Sum::projection_divisor) + ")"; });
    seg_.validate();
    layers_.reserve(shape.num_layers);
    for (int l = 0; l < shape.num_layers; ++l) {
      layers_.emplace_back(opts.selector, opts.offloader, init(l));
      layers_.back().selector.validate();
    }
  }

  const model_shape& shape() const { return shape_; }
  const options& opts() const { return opts_; }
  float softmax_scale() const {
    return opts_.softmax_scale > 0.f ? opts_.softmax_scale : 1.f / std::sqrt(float(shape_.head_dim));
  }
  //! Prompt queries (per sequence, the last ones) the selector reads at prefill of `layer`; 0 = none.
  int window(int layer = 0) const { return layers_[check_layer(layer, "skv::kv_cache::window")].selector.window(); }
  //! Batch size of `layer`'s current prefill (0 before it).
  int batch_size(int layer) const { return layers_[check_layer(layer, "skv::kv_cache::batch_size")].batch; }
  //! Logical length of sequence `seq` in `layer`: prompt plus appended tokens.
  std::int64_t length(int layer, int seq) const {
    return prefilled(layer, "skv::kv_cache::length")
        .seqs.seqs()[check_seq(layer, seq, "skv::kv_cache::length")]
        .n_tokens;
  }
  //! Tokens retained (on either tier) for sequence `seq`, KV head `head` of `layer`.
  std::int64_t retained(int layer, int seq, int head) const {
    constexpr const char* where = "skv::kv_cache::retained";
    const layer_t& L = prefilled(layer, where);
    detail::require(head >= 0 && head < shape_.num_kv_heads, where, "head", head,
                    [&] { return detail::index_range(shape_.num_kv_heads); });
    return L.store.length(std::size_t(check_seq(layer, seq, where)) * shape_.num_kv_heads + head);
  }
  //! First positions of the closed segments of sequence `seq` in `layer`.
  std::vector<std::int32_t> segment_begins(int layer, int seq) const {
    constexpr const char* where = "skv::kv_cache::segment_begins";
    return prefilled(layer, where).seqs.seqs()[check_seq(layer, seq, where)].segment_begins;
  }
  //! The policies of `layer` (tests, tools, custom policies).
  Sel& selector(int layer) { return layers_[check_layer(layer, "skv::kv_cache::selector")].selector; }
  Off& offloader(int layer) { return layers_[check_layer(layer, "skv::kv_cache::offloader")].offloader; }

  //! Allocates every buffer for batches of up to `r.max_batch` sequences of up to `r.max_tokens` tokens, so that
  //! afterwards `append`, `select`, `attend` and `step` allocate nothing (prefill still allocates its scratch).
  //! Best called before the first prefill; layers that hold prompts are re-laid (their contents kept). Waits.
  void reserve(const reservation& r, stream_t s = {}) {
    constexpr const char* where = "skv::kv_cache::reserve";
    detail::require(r.max_batch >= 1, where, "max_batch", r.max_batch, ">= 1");
    detail::require(r.max_tokens >= 1 && r.max_tokens < INT32_MAX, where, "max_tokens", r.max_tokens, "[1, 2^31 - 1)");
    detail::require(r.max_segments >= 0, where, "max_segments", r.max_segments, ">= 0 (0: the segmenter's bound)");
    reservation res = r;
    if (res.max_segments == 0) {
      if constexpr (bounded_segmenter<Seg>)
        res.max_segments = seg_.max_segments(r.max_tokens);
      else
        res.max_segments = r.max_tokens;
    }
    std::int64_t most = 1; // tokens one pair attends at most, over layers
    for (auto& L : layers_) most = std::max(most, L.reserve(res, shape_, tracks_segments, s));
    attention_.reserve(r.max_pairs(shape_), shape_.group_size(), shape_.head_dim, most, observing_selector<Sel>);
  }
  void reserve(int max_batch, std::int64_t max_tokens, stream_t s = {}) {
    reserve(reservation{max_batch, max_tokens}, s);
  }

  //! Drops every layer's contents and memory (the reservation too: call reserve() again to keep decoding
  //! allocation-free).
  void reset() {
    layers_.clear();
    guide_->clear();
    release(guide_->mass);
    release(guide_->rows);
    for (int l = 0; l < shape_.num_layers; ++l) layers_.emplace_back(opts_.selector, opts_.offloader, init(l));
    last_prefilled_ = -1;
  }

  //! Stores a prompt batch for `layer`, replacing what the layer held: the selector decides what is retained, the
  //! offloader's tier receives it, segments are formed and summarized. Waits for its work before returning.
  template <class Src>
  void prefill(int layer, const prefill_args<Src>& a, stream_t s = {}) {
    constexpr const char* where = "skv::kv_cache::prefill";
    check_layer(layer, where);
    validate_prefill(a, layer, where, s);
    layer_t& L = layers_[layer];
    synchronize(s); // earlier work on this layer may still read buffers that the new prompt re-lays
    L.prefilled = false;
    const int B = a.batch_size(), H = shape_.num_kv_heads;
    const layer_info li = info(layer, B, s);
    std::vector<std::int64_t> seq_row(B);
    std::vector<std::int32_t> seq_len(B);
    std::int64_t longest = 1;
    for (int b = 0; b < B; ++b) {
      seq_row[b] = a.indptr[b];
      seq_len[b] = a.indptr[b + 1] - a.indptr[b];
      longest = std::max<std::int64_t>(longest, seq_len[b]);
    }
    L.seqs.segment_prompt(seg_, a.indptr, a.token_ids, H, s);
    const prefill_context<Src> ctx{li, a.k, a.q, a.token_ids, seq_row, seq_len, L.seqs.seqs()};
    detail::retention_buffers scratch(memory());
    retention_list keep = scratch.list(li.pairs(), longest);
    if constexpr (layer_reusing_selector<Sel>) {
      if (layer > 0 && last_prefilled_ == layer - 1)
        L.selector.retain_prefill(ctx, keep, layers_[layer - 1].selector);
      else
        L.selector.retain_prefill(ctx, keep);
    } else {
      L.selector.retain_prefill(ctx, keep);
    }
    fast_vector<std::int32_t> keep_len(memory().of(tier::fast));
    fast_vector<std::int64_t> rows(memory().of(tier::fast));
    detail::upload(keep_len, std::vector<std::int32_t>(keep.length_host.begin(), keep.length_host.end()), s);
    detail::upload(rows, seq_row, s);
    L.store.assign_prompt(a.k, a.v, keep, raw(keep_len), raw(rows), H, s);
    if constexpr (tracks_segments)
      L.segments.build(L.seqs.seqs(), H, L.store, L.seqs.device(seq_field::partial_begin), s);
    L.queries.clear(B, shape_.num_q_heads, shape_.head_dim);
    L.offloader.invalidate(li);
    L.sel.valid = L.sel.fetched = false;
    std::int64_t kept = 0;
    for (auto n : keep.length_host) kept += n;
    if (store_tier == tier::slow) L.moved_to_slow += std::size_t(kept) * token_bytes();
    synchronize(s);
    L.batch = B;
    L.prefilled = true;
    last_prefilled_ = layer;
  }

  //! Appends one decoded token per sequence to `layer`: K/V join the store, the query joins the open segment, a
  //! segment may close (and is summarized), and the selector may evict.
  template <class Src>
  void append(int layer, const decode_args<Src>& a, stream_t s = {}) {
    layer_t& L = prefilled(layer, "skv::kv_cache::append");
    validate_decode(a, L, "skv::kv_cache::append", s);
    append_checked(layer, L, a, s);
  }

  //! Chooses the tokens `layer` attends to for the current decode query (the one given to `append`).
  void select(int layer, stream_t s = {}) {
    constexpr const char* where = "skv::kv_cache::select";
    layer_t& L = prefilled(layer, where);
    require_query(L, layer, where);
    select_checked(L, info(layer, L.batch, s));
  }
  //! Makes the current selection reachable from the fast tier (the offloader's fetch); `attend` does it if needed.
  void fetch(int layer, stream_t s = {}) {
    layer_t& L = selected(layer, "skv::kv_cache::fetch");
    fetch_checked(L, info(layer, L.batch, s));
  }

  //! Exact softmax attention of the current decode query over the selected tokens (float accumulation); selects
  //! and fetches first when that has not happened since the last append. Repeating it changes nothing.
  //! @param out [batch, num_q_heads, head_dim] view, of float or the storage type
  template <class O>
  void attend(int layer, tensor_view<O> out, stream_t s = {}) {
    constexpr const char* where = "skv::kv_cache::attend";
    layer_t& L = prefilled(layer, where);
    require_query(L, layer, where);
    detail::check_view(out, where, "out", L.batch, shape_.num_q_heads, shape_.head_dim);
    attend_checked(L, info(layer, L.batch, s), out);
  }

  //! append + select + fetch + attend for one decode step of `layer`; every argument is checked before anything
  //! changes. Observing selectors (H2O) learn from this step's attention here, and only here.
  template <class Src, class O>
  void step(int layer, const decode_args<Src>& a, tensor_view<O> out, stream_t s = {}) {
    constexpr const char* where = "skv::kv_cache::step";
    layer_t& L = prefilled(layer, where);
    validate_decode(a, L, where, s);
    detail::check_view(out, where, "out", L.batch, shape_.num_q_heads, shape_.head_dim);
    append_checked(layer, L, a, s);
    const layer_info li = info(layer, L.batch, s);
    attend_checked(L, li, out);
    if constexpr (observing_selector<Sel>) {
      const skv::selection sel = L.current_selection();
      const auto w = attention_.weights(L.fetched, sel, L.sel.max_bound(), li);
      L.selector.observe(L.select_ctx(li), sel, w);
    }
  }

  //! Host upper bounds of the current selection of `layer`, known without waiting: of all its tokens (size
  //! `export_csr`'s indices with it) and of one pair's (a padded table's width).
  std::int64_t selection_bound(int layer) {
    return selected(layer, "skv::kv_cache::selection_bound").sel.total_bound();
  }
  std::int64_t selection_width(int layer) { return selected(layer, "skv::kv_cache::selection_width").sel.max_bound(); }
  //! Exact totals of the current selection (wait for the device).
  std::int64_t selection_nnz(int layer, stream_t s = {}) {
    const auto c = selection(layer, s);
    return std::int64_t(c.indices.size());
  }
  std::int32_t selection_max(int layer, stream_t s = {}) {
    const auto c = selection(layer, s);
    std::int32_t m = 0;
    for (std::size_t p = 0; p + 1 < c.indptr.size(); ++p) m = std::max(m, c.indptr[p + 1] - c.indptr[p]);
    return m;
  }

  //! Exports the current selection of `layer` as CSR over pairs (sequence-major, then KV head) of logical token
  //! positions, on `s` without waiting. `indptr`: [pairs + 1]; `indices`: `capacity` >= selection_bound(layer)
  //! entries. Device pointers on CUDA.
  void export_csr(int layer, std::int32_t* indptr, std::int32_t* indices, std::int64_t capacity, stream_t s = {}) {
    constexpr const char* where = "skv::kv_cache::export_csr";
    layer_t& L = selected(layer, where);
    detail::require(indptr != nullptr, where, "indptr", "null", "a pointer to pairs + 1 int32");
    const std::int64_t need = L.sel.total_bound();
    detail::require(capacity >= need, where, "capacity", capacity,
                    [&] { return ">= selection_bound(layer) = " + std::to_string(need); });
    detail::require(indices != nullptr || need == 0, where, "indices", "null", "a pointer to `capacity` int32");
    detail::export_csr(L.store.view(), L.current_selection(), L.sel.max_bound(), L.pairs(shape_), indptr, indices, s);
  }
  //! Exports as a `-1`-padded table [pairs, width] (width >= selection_width(layer)) plus valid lengths [pairs].
  void export_padded(int layer, std::int32_t* table, std::int64_t width, std::int32_t* lengths, stream_t s = {}) {
    constexpr const char* where = "skv::kv_cache::export_padded";
    layer_t& L = selected(layer, where);
    const std::int64_t need = L.sel.max_bound();
    detail::require(width >= need, where, "width", width,
                    [&] { return ">= selection_width(layer) = " + std::to_string(need); });
    detail::require(table != nullptr && lengths != nullptr, where, "table/lengths", "null", "non-null pointers");
    detail::export_padded(L.store.view(), L.current_selection(), need, L.pairs(shape_), table, width, lengths, s);
  }
  //! The current selection of `layer` as host vectors (waits for the device).
  selection_csr selection(int layer, stream_t s = {}) {
    const int P = selected(layer, "skv::kv_cache::selection").pairs(shape_);
    fast_vector<std::int32_t> indptr(std::size_t(P + 1), 0, memory().of(tier::fast));
    fast_vector<std::int32_t> indices(std::size_t(std::max<std::int64_t>(1, selection_bound(layer))), 0,
                                      memory().of(tier::fast));
    export_csr(layer, raw(indptr), raw(indices), std::int64_t(indices.size()), s);
    return detail::download_csr(raw(indptr), raw(indices), P, s);
  }

  //! Bytes resident per tier now, and bytes moved between tiers since the last call (which resets them; waits).
  memory_ledger ledger(stream_t s = {}) {
    memory_ledger m;
    for (int l = 0; l < shape_.num_layers; ++l) {
      layer_t& L = layers_[l];
      m.fast_bytes += L.fast_bytes();
      if (store_tier == tier::slow) m.slow_bytes += L.store.tier_bytes();
      m.moved_to_fast += L.offloader.take_moved_bytes(info(l, L.batch, s));
      m.moved_to_slow += std::exchange(L.moved_to_slow, 0);
    }
    m.fast_bytes += attention_.fast_bytes() + guide_->bytes();
    return m;
  }

private:
  tier_resources memory() const { return {opts_.fast_memory, opts_.slow_memory}; }
  policy_init init(int layer) const {
    return {layer,           shape_.num_layers,        shape_, int(sizeof(T)), memory(), sketched_summarizer<Sum>,
            projection_rank(), guide_.get()};
  }
  layer_info info(int layer, int batch, stream_t s) const {
    return {layer, shape_.num_layers, shape_, batch, softmax_scale(), s};
  }
  int projection_rank() const {
    if constexpr (projected_summarizer<Sum>)
      return shape_.head_dim / Sum::projection_divisor;
    else
      return 0;
  }
  std::size_t token_bytes() const { return std::size_t(shape_.head_dim) * 2 * sizeof(T) + sizeof(std::int32_t); }

  int check_layer(int layer, const char* where) const {
    detail::require(layer >= 0 && layer < shape_.num_layers, where, "layer", layer,
                    [&] { return detail::index_range(shape_.num_layers); });
    return layer;
  }
  int check_seq(int layer, int seq, const char* where) const {
    const int B = layers_[layer].batch;
    detail::require(seq >= 0 && seq < B, where, "seq", seq, [&] { return detail::index_range(B); });
    return seq;
  }
  const layer_t& prefilled(int layer, const char* where) const {
    const layer_t& L = layers_[check_layer(layer, where)];
    if (!L.prefilled)
      throw skv::logic_error(std::string(where) + ": layer " + std::to_string(layer) +
                             " holds no prompt: call prefill() for it first");
    return L;
  }
  layer_t& prefilled(int layer, const char* where) {
    return const_cast<layer_t&>(std::as_const(*this).prefilled(layer, where));
  }
  void require_query(const layer_t& L, int layer, const char* where) const {
    if (!L.queries.loaded())
      throw skv::logic_error(std::string(where) + ": layer " + std::to_string(layer) +
                             " has no decode query: call append() (or step()) after prefill()");
  }
  layer_t& selected(int layer, const char* where) {
    layer_t& L = prefilled(layer, where);
    if (!L.sel.valid)
      throw skv::logic_error(std::string(where) + ": layer " + std::to_string(layer) +
                             " has no current selection: call select() (or attend()) after append()");
    return L;
  }

  template <class Src>
  void validate_prefill(const prefill_args<Src>& a, int layer, const char* where, stream_t s) const {
    detail::validate_prefill(a, shape_, layers_[layer].selector.window(), opts_.check_values, where, s);
  }
  template <class Src>
  void validate_decode(const decode_args<Src>& a, const layer_t& L, const char* where, stream_t s) const {
    detail::validate_decode(a, shape_, L.seqs.seqs(), opts_.check_values, where, s);
  }

  template <class Src>
  void append_checked(int layer, layer_t& L, const decode_args<Src>& a, stream_t s) {
    const layer_info li = info(layer, L.batch, s);
    const bool closes = L.seqs.preview(seg_, a.token_ids);
    if (!L.store.fits(1)) L.store.grow(1, s); // past the reservation: allocates
    if constexpr (tracks_segments)
      if (closes && !L.segments.fits_one()) L.segments.grow(s);
    L.seqs.commit();
    L.seqs.upload(s);
    L.store.append(a.k, a.v, L.seqs.device(seq_field::position), li.kv_heads(), s);
    if (store_tier == tier::slow) L.moved_to_slow += std::size_t(li.pairs()) * token_bytes();
    L.queries.load(a.q, L.seqs.device(seq_field::reset), L.batch, shape_.num_q_heads, shape_.head_dim, s);
    if constexpr (tracks_segments)
      if (closes)
        L.segments.close(L.store, L.seqs.device(seq_field::closed_begin), L.seqs.device(seq_field::position),
                         L.seqs.closed(), li.kv_heads(), s);
    retention_list keep = L.keep.list(li.pairs(), L.store.max_length());
    if (L.selector.retain_append(append_context<T>{li, L.store.view(), L.seqs.seqs()}, keep)) {
      for (int p = 0; p < li.pairs(); ++p) L.seqs.keep_len_host()[p] = std::int32_t(keep.length_host[p]);
      L.seqs.upload_keep(li.pairs(), s);
      L.store.compact(keep, L.seqs.keep_len_device(), s);
      if constexpr (tracks_segments)
        L.segments.relocate(L.store, L.seqs.device(seq_field::partial_begin), li.kv_heads(), s);
      L.offloader.invalidate(li);
    }
    L.sel.valid = L.sel.fetched = false;
  }
  void select_checked(layer_t& L, const layer_info& li) {
    skv::selection out = L.sel.view(li.pairs(), L.selector.max_selected());
    L.selector.select(L.select_ctx(li), out);
    L.sel.valid = true;
    L.sel.fetched = false;
  }
  void fetch_checked(layer_t& L, const layer_info& li) {
    L.fetched = L.offloader.fetch(L.store.view(), L.current_selection(), li);
    L.sel.fetched = true;
  }
  template <class O>
  void attend_checked(layer_t& L, const layer_info& li, tensor_view<O> out) {
    if (!L.sel.valid) select_checked(L, li);
    if (!L.sel.fetched) fetch_checked(L, li);
    attention_.run(L.queries.current(), softmax_scale(), L.fetched, L.current_selection(), L.sel.max_bound(), li, out);
  }

  model_shape shape_;
  options opts_;
  Seg seg_;
  std::vector<layer_t> layers_;
  detail::decode_attention<T> attention_;
  std::unique_ptr<detail::layer_guide> guide_; //!< on the heap: the layers' policies keep its address across moves
  int last_prefilled_ = -1; //!< the layer prefilled last (layer-reusing selectors read the one before)
};

SKV_NAMESPACE_END
