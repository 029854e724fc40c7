//! @file selector/semantic_topk_selector.hpp
//! Rank segments by their summaries against the decode query, take whole segments in rank order under a token
//! budget, plus attention sinks and a recent window (SentenceKV, arXiv 2504.00970 §3.3; with min/max summaries and
//! the current query, Quest, arXiv 2406.10774 §3).
//!
//! At prefill the prompt can be pre-filtered SnapKV-style (SentenceKV keeps r * budget tokens); at each decode step
//! the query is the mean of the open segment's queries (SentenceKV) or the current query (Quest), scored against
//! every closed segment's summary, summed over the KV head's query group. Selection is per (sequence, KV head).
#pragma once

#include <skv/detail/dispatch.hpp>
#include <skv/selector/common.hpp>
#include <skv/selector/window_retention.hpp>
#include <skv/tensor.hpp>

#include <algorithm>
#include <string>

SKV_NAMESPACE_BEGIN

//! Which query ranks the segments.
enum class query_mode {
  partial_mean, //!< mean of the open segment's queries (SentenceKV)
  current,      //!< the current decode query (Quest)
};

//! SentenceKV's official defaults (τ = 1024, r = 3, w = 32, kernel 7, sink 32, recent 32, threshold 1).
struct sentence_kv_defaults {
  static constexpr int budget = 1024;
  static constexpr int sink = 32;
  static constexpr int recent = 32;
  static constexpr bool prefilter = true;
  static constexpr float retention = 3.f;
  static constexpr bool fallback = true;
  static constexpr int length_threshold = 1;
  static constexpr query_mode query = query_mode::partial_mean;
  static constexpr int dense_layers = 0;
};
//! SentenceKV with the pre-filter off: every prompt token stays recallable from the slow tier.
struct sentence_kv_lossless_defaults : sentence_kv_defaults {
  static constexpr bool prefilter = false;
};
//! SentenceKV as the paper's figure describes it: no sink, no recent window, no fallback.
struct sentence_kv_paper_defaults : sentence_kv_defaults {
  static constexpr int sink = 0;
  static constexpr int recent = 0;
  static constexpr bool fallback = false;
};
//! Quest: pages ranked by the current query, first two layers dense, no prefill compression. The recent window
//! of 16 stands for Quest's always-attended current page (the open page has no bounds yet).
struct quest_defaults {
  static constexpr int budget = 1024;
  static constexpr int sink = 0;
  static constexpr int recent = 16;
  static constexpr bool prefilter = false;
  static constexpr float retention = 3.f;
  static constexpr bool fallback = false;
  static constexpr int length_threshold = 1;
  static constexpr query_mode query = query_mode::current;
  static constexpr int dense_layers = 2;
};

namespace detail {
//! The ranking query per (sequence, query head): the current query, or the open segment's mean.
struct ranking_query {
  const float* q;
  const float* q_partial;
  const float* inv_count; // [batch] 1 / queries in the open segment
  float* out;
  std::int64_t per_seq;
  bool mean;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    out[i] = mean ? q_partial[i] * inv_count[i / per_seq] : q[i];
  }
};

//! Sums the ranking queries of each pair's query group (for summarizers whose score is linear in the query).
struct sum_group_queries {
  const float* q; // [pairs, group, dim]
  float* out;     // [pairs, dim]
  int group, dim;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / dim, d = i % dim;
    float s = 0.f;
    for (int g = 0; g < group; ++g) s += q[(p * group + g) * dim + d];
    out[i] = s;
  }
};

//! Score of every closed segment of every pair; `group` query rows per pair (1 when pre-summed).
template <class Sum, class T, int D>
struct score_segments {
  const float* q;   // [pairs, group, D]
  const T* summary; // laid out by seg_off
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  float* score; // laid out by seg_off
  int group;
  std::int64_t max_rows;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, s = i % max_rows;
    if (s >= rows[p]) return;
    const float* qp = q + p * group * D; // pair p = b * kv_heads + h owns query heads [h * group, (h + 1) * group)
    const std::int64_t row = seg_off[p] + s;
    score[row] = Sum::template score<T>(qp, group, D, summary + row * Sum::vectors * D);
  }
};

//! Per pair: sink + top segments under the budget + recent, as increasing store indices.
struct take_segments {
  const float* score;
  const std::int64_t* seg_off;
  const std::int32_t* rows;
  const std::int32_t* first;
  const std::int32_t* count;
  const std::int32_t* length; // [pairs] retained tokens
  const std::uint8_t* dense;  // [pairs] 1: select everything (fallback / dense layer)
  std::int32_t* sel_index;    // [pairs, cap]
  std::int32_t* sel_count;
  std::uint8_t* sel_all;
  float* heap_score; // [pairs, budget + 1]
  std::int32_t* heap_id;
  std::int64_t cap;
  int sink, recent;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int32_t n = length[p];
    std::int32_t* out = sel_index + p * cap;
    if (dense[p]) {
      sel_all[p] = 1;
      sel_count[p] = n;
      return;
    }
    sel_all[p] = 0;
    if (n <= cap) { // everything retained fits in the budget
      for (std::int32_t i = 0; i < n; ++i) out[i] = i;
      sel_count[p] = n;
      return;
    }
    const std::int32_t head = sink < n ? sink : n;
    const std::int32_t tail = recent < n - head ? recent : n - head;
    const std::int32_t lo = head, hi = n - tail; // segments compete for the tokens in [lo, hi)
    const std::int64_t budget = cap - sink - recent;
    const float* s = score + seg_off[p];
    const std::int32_t* f = first + seg_off[p];
    const std::int32_t* c = count + seg_off[p];
    auto weight = [=](std::int32_t i) -> std::int64_t {
      const std::int32_t a = f[i] > lo ? f[i] : lo, e = f[i] + c[i] < hi ? f[i] + c[i] : hi;
      return e > a ? e - a : 0;
    };
    float* hs = heap_score + p * (budget + 1);
    std::int32_t* hid = heap_id + p * (budget + 1);
    const int h = budget_topk(
        rows[p], [s](std::int32_t i) { return s[i]; }, weight, budget, hs, hid);
    std::int64_t taken = 0;
    for (int i = 0; i + 1 < h; ++i) taken += weight(hid[i]);
    const std::int32_t cut_id = h > 0 ? hid[h - 1] : -1;
    const std::int64_t cut_take = budget - taken; // the last-ranked segment may be cut
    sort_ascending(hid, h);
    std::int32_t k = 0;
    for (std::int32_t i = 0; i < head; ++i) out[k++] = i;
    for (int j = 0; j < h; ++j) {
      const std::int32_t id = hid[j];
      const std::int32_t a = f[id] > lo ? f[id] : lo;
      std::int64_t take = weight(id);
      if (id == cut_id && cut_take < take) take = cut_take;
      for (std::int64_t t = 0; t < take; ++t) out[k++] = std::int32_t(a + t);
    }
    for (std::int32_t i = hi; i < n; ++i) out[k++] = i;
    sel_count[p] = k;
  }
};
} // namespace detail

//! Segments are ranked with the cache's summarizer (`Sum::score`), so the same selector serves mean keys
//! (SentenceKV) and min/max bounds (Quest).
//! @tparam Defaults the default option values (sentence_kv_defaults, quest_defaults, ...)
template <class Defaults = sentence_kv_defaults>
struct semantic_topk_selector {
  struct options {
    int budget = Defaults::budget;                     //!< τ: tokens attended per (sequence, KV head)
    int sink = Defaults::sink;                         //!< first retained tokens, always selected
    int recent = Defaults::recent;                     //!< last retained tokens, always selected
    bool prefilter = Defaults::prefilter;              //!< SnapKV-style prompt compression at prefill
    float retention = Defaults::retention;             //!< r: the pre-filter keeps r * budget tokens
    window_options window{};                           //!< pre-filter window (32) and pooling kernel (7)
    bool fallback = Defaults::fallback;                //!< attend to everything while the open segment is short
    int length_threshold = Defaults::length_threshold; //!< ... i.e. has <= this many queries
    query_mode query = Defaults::query;                //!< which query ranks the segments
    int dense_layers = Defaults::dense_layers;         //!< the first layers attend to everything (Quest: 2)
  };
  static constexpr bool needs_summaries = true;

  semantic_topk_selector(const options& o, int layer, int) : o_(o), layer_(layer) {}

  void validate(const model_shape&) const {
    constexpr const char* where = "skv::semantic_topk_selector";
    detail::require(o_.sink >= 0, where, "sink", o_.sink, ">= 0");
    detail::require(o_.recent >= 0, where, "recent", o_.recent, ">= 0");
    detail::require(o_.budget > o_.sink + o_.recent, where, "budget", o_.budget,
                    "> sink + recent (" + std::to_string(o_.sink + o_.recent) + ")");
    detail::require(o_.retention >= 1.f, where, "retention", o_.retention, ">= 1 (r: the pre-filter keeps r * budget)");
    if (o_.prefilter) {
      o_.window.validate(where);
      detail::require(capacity() >= o_.window.window, where, "retention", o_.retention,
                      "r * budget >= window (" + std::to_string(o_.window.window) + ")");
    }
    detail::require(o_.length_threshold >= 0, where, "length_threshold", o_.length_threshold, ">= 0");
    detail::require(o_.dense_layers >= 0, where, "dense_layers", o_.dense_layers, ">= 0");
  }
  int window() const { return o_.prefilter ? o_.window.window : 0; }
  const options& opts() const { return o_; }
  //! Tokens the pre-filter keeps per (sequence, KV head).
  std::int64_t capacity() const { return std::int64_t(o_.retention * float(o_.budget)); }

  template <class L, class Src>
  void retain_prefill(L& l, const detail::prefill_input<Src>& in, detail::index_lists& keep) {
    if (o_.prefilter)
      detail::retain_by_window(l, in, o_.window, capacity(), keep);
    else
      detail::retain_everything(l, in, keep);
  }
  template <class L>
  bool retain_append(L&, detail::index_lists&) {
    return false;
  }

  template <class L>
  void select(L& l) {
    using T = typename L::value_type;
    using Sum = typename L::summarizer_type;
    const int P = l.pairs(), H = l.kv_heads(), G = l.group(), D = l.dim();
    std::vector<std::uint8_t> dense(P);
    std::vector<float> inv(l.batch);
    for (int b = 0; b < l.batch; ++b) {
      const auto& s = l.seqs[b];
      const bool fall = o_.fallback && s.partial_queries <= o_.length_threshold;
      inv[b] = 1.f / float(s.partial_queries > 0 ? s.partial_queries : 1);
      for (int h = 0; h < H; ++h) dense[b * H + h] = layer_ < o_.dense_layers || fall;
    }
    // ranking query
    resize(query_, l.q.size());
    fast_vector<float> d_inv(inv.begin(), inv.end());
    detail::parallel_for(std::int64_t(l.q.size()),
                         detail::ranking_query{raw(l.q), raw(l.q_partial), raw(d_inv), raw(query_),
                                               std::int64_t(l.shape.num_q_heads) * D,
                                               o_.query == query_mode::partial_mean});
    // segment scores (skipped when every pair attends to everything: dense layers, fallback steps)
    const auto& lay = l.segs.layout;
    std::int64_t max_rows = 1;
    for (int p = 0; p < P; ++p) max_rows = std::max<std::int64_t>(max_rows, lay.length[p]);
    resize(score_, std::max<std::size_t>(1, std::size_t(lay.total_capacity())));
    const bool all_dense = std::all_of(dense.begin(), dense.end(), [](std::uint8_t x) { return x != 0; });
    if (!all_dense) {
      // a score linear in the query (mean keys) sums the group's queries once instead of once per segment
      constexpr bool linear = requires { requires Sum::linear_in_query; };
      const float* qs = raw(query_);
      int rows_per_pair = G;
      if constexpr (linear) {
        resize(query_sum_, std::size_t(P) * D);
        detail::parallel_for(std::int64_t(P) * D, detail::sum_group_queries{raw(query_), raw(query_sum_), G, D});
        qs = raw(query_sum_);
        rows_per_pair = 1;
      }
      detail::dispatch_head_dim(D, [&](auto d) {
        detail::parallel_for(std::int64_t(P) * max_rows,
                             detail::score_segments<Sum, T, decltype(d)::value>{
                                 qs, raw(l.segs.summary), raw(lay.d_offset), raw(lay.d_length), raw(score_),
                                 rows_per_pair, max_rows});
      });
    }
    // take
    const std::int64_t budget = o_.budget - o_.sink - o_.recent;
    resize(heap_score_, std::size_t(P * (budget + 1)));
    resize(heap_id_, std::size_t(P * (budget + 1)));
    l.sel.capacity = o_.budget;
    resize(l.sel.index, std::size_t(P) * o_.budget);
    resize(l.sel.count, P);
    resize(l.sel.all, P);
    dense_.assign(dense.begin(), dense.end());
    detail::parallel_for(P, detail::take_segments{raw(score_), raw(lay.d_offset), raw(lay.d_length), raw(l.segs.first),
                                                  raw(l.segs.count), raw(l.store.layout.d_length), raw(dense_),
                                                  raw(l.sel.index), raw(l.sel.count), raw(l.sel.all), raw(heap_score_),
                                                  raw(heap_id_), o_.budget, o_.sink, o_.recent});
  }

  std::size_t bytes() const {
    return allocated_bytes(query_) + allocated_bytes(query_sum_) + allocated_bytes(score_) + allocated_bytes(heap_score_) +
           allocated_bytes(heap_id_) + allocated_bytes(dense_);
  }

private:
  options o_;
  int layer_ = 0;
  fast_vector<float> query_, query_sum_, score_, heap_score_;
  fast_vector<std::int32_t> heap_id_;
  fast_vector<std::uint8_t> dense_;
};

SKV_NAMESPACE_END
