//! @file selector/window_score_selector.hpp
//! Prefill-time compression by observation-window attention, per (sequence, KV head), then dense decode over what
//! was kept. One selector for three methods:
//! - SnapKV (arXiv 2404.14469): token segments, max-pool kernel 7, keep the top `budget - window` tokens + window;
//! - PyramidKV (arXiv 2406.02069): the same with budgets decreasing linearly with depth (`pyramid_beta`);
//! - ChunkKV (arXiv 2502.00299): fixed chunks scored by their summed window attention, whole chunks kept, and
//!   layer-wise index reuse (a layer reuses the kept positions of the layer before, `reuse_depth` layers a group).
//! Decode tokens are appended and never evicted (as in the official code).
#pragma once

#include <skv/selector/common.hpp>
#include <skv/selector/window_retention.hpp>
#include <skv/tensor.hpp>

#include <string>
#include <vector>

SKV_NAMESPACE_BEGIN

//! SnapKV's defaults (window 32, max-pool 7, budget 1024).
struct snap_kv_defaults {
  static constexpr int budget = 1024;
  static constexpr int kernel = 7;
  static constexpr int pyramid_beta = 0;
  static constexpr int reuse_depth = 1;
};
//! PyramidKV: SnapKV's scoring with per-layer budgets from β = 20 (same average budget).
struct pyramid_kv_defaults : snap_kv_defaults {
  static constexpr int pyramid_beta = 20;
};
//! ChunkKV: chunks scored by summed window attention (no pooling), indices reused by pairs of adjacent layers.
struct chunk_kv_defaults : snap_kv_defaults {
  static constexpr int kernel = 1;
  static constexpr int reuse_depth = 2;
};

//! PyramidKV's per-layer capacity (tokens, window included), as the official code computes it: capacities fall
//! linearly from `2 (budget - window) - (budget - window) / beta` at layer 0 to `(budget - window) / beta` at the
//! last layer, plus the window, so the average over layers stays `budget`.
inline std::int64_t pyramid_capacity(int layer, int num_layers, std::int64_t budget, int window, int beta) {
  if (beta <= 0 || num_layers <= 1) return budget;
  const std::int64_t base = budget - window, min_num = base / beta, max_num = base * 2 - min_num;
  const std::int64_t steps = (max_num - min_num) / (num_layers - 1);
  return max_num - std::int64_t(layer) * steps + window;
}

namespace detail {
//! Per pair and closed segment: the summed (pooled) window score of its tokens before the window, and how many.
struct segment_window_scores {
  const float* pooled;
  const std::int64_t* score_off;
  const std::int32_t* limit;
  const std::int32_t* begins;
  const std::int64_t* begin_off;
  const std::int32_t* segs; // [batch] closed segments
  const std::int32_t* n;    // [pairs] prompt length
  float* seg_score;         // [pairs, max_segs]
  std::int32_t* seg_weight;
  int kv_heads;
  std::int64_t max_segs;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_segs, s = i % max_segs, b = p / kv_heads;
    if (s >= segs[b]) return;
    const std::int32_t* bs = begins + begin_off[b];
    const std::int32_t lo = bs[s], end = s + 1 < segs[b] ? bs[s + 1] : n[p];
    const std::int32_t hi = end < limit[p] ? end : limit[p];
    float sum = 0.f;
    for (std::int32_t t = lo; t < hi; ++t) sum += pooled[score_off[p] + t];
    seg_score[i] = sum;
    seg_weight[i] = hi > lo ? hi - lo : 0;
  }
};

//! Per pair: top segments under `k[p]` tokens (whole segments in rank order, the last one cut to its first tokens),
//! then the window [limit, n); written increasing.
struct keep_top_segments {
  const float* seg_score;
  const std::int32_t* seg_weight;
  const std::int32_t* begins;
  const std::int64_t* begin_off;
  const std::int32_t* segs;
  const std::int32_t* limit;
  const std::int32_t* n;
  const std::int64_t* k;
  const std::int64_t* out_off;
  std::int32_t* out;
  float* heap_score;
  std::int32_t* heap_id;
  std::int64_t heap_cap, max_segs;
  int kv_heads;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int64_t b = p / kv_heads;
    const float* sc = seg_score + p * max_segs;
    const std::int32_t* w = seg_weight + p * max_segs;
    const std::int32_t* bs = begins + begin_off[b];
    std::int32_t* o = out + out_off[p];
    std::int64_t m = 0;
    float* hs = heap_score + p * heap_cap;
    std::int32_t* hi = heap_id + p * heap_cap;
    const int h = budget_topk(
        segs[b], [sc](std::int32_t i) { return sc[i]; }, [w](std::int32_t i) { return std::int64_t(w[i]); }, k[p], hs,
        hi);
    std::int64_t taken = 0;
    for (int i = 0; i + 1 < h; ++i) taken += w[hi[i]];
    const std::int32_t cut_id = h > 0 ? hi[h - 1] : -1;
    const std::int64_t cut_take = k[p] - taken;
    sort_ascending(hi, h);
    for (int j = 0; j < h; ++j) {
      std::int64_t take = w[hi[j]];
      if (hi[j] == cut_id && cut_take < take) take = cut_take;
      for (std::int64_t t = 0; t < take; ++t) o[m++] = bs[hi[j]] + std::int32_t(t);
    }
    for (std::int32_t t = limit[p]; t < n[p]; ++t) o[m++] = t;
  }
};
} // namespace detail

template <class Defaults = snap_kv_defaults>
struct window_score_selector {
  struct options {
    int budget = Defaults::budget;               //!< tokens kept per (sequence, KV head) at prefill, window included
    window_options window{32, Defaults::kernel}; //!< observation window and max-pool kernel (1 = no pooling)
    int pyramid_beta = Defaults::pyramid_beta;   //!< > 0: PyramidKV per-layer budgets with this β (0 = off)
    int reuse_depth = Defaults::reuse_depth;     //!< layers sharing one set of kept positions (1 = no reuse)
    std::vector<int> head_budgets;               //!< optional per-KV-head budgets (overrides `budget`)
  };
  static constexpr bool needs_summaries = false;

  window_score_selector(const options& o, int layer, int num_layers) : o_(o), layer_(layer), layers_(num_layers) {}

  void validate(const model_shape& shape) const {
    constexpr const char* where = "skv::window_score_selector";
    o_.window.validate(where);
    detail::require(o_.budget > o_.window.window, where, "budget", o_.budget,
                    "> window (" + std::to_string(o_.window.window) + ")");
    detail::require(o_.pyramid_beta >= 0, where, "pyramid_beta", o_.pyramid_beta, ">= 0 (0 = off)");
    detail::require(o_.reuse_depth >= 1, where, "reuse_depth", o_.reuse_depth, ">= 1 (1 = no reuse)");
    if (o_.pyramid_beta > 0) {
      const std::int64_t last = capacity(layers_ - 1, 0);
      detail::require(last > o_.window.window, where, "pyramid_beta", o_.pyramid_beta,
                      "a value that leaves the last layer more than the window (its capacity would be " +
                          std::to_string(last) + ")");
    }
    detail::require(o_.head_budgets.empty() || int(o_.head_budgets.size()) == shape.num_kv_heads, where,
                    "head_budgets.size()", o_.head_budgets.size(),
                    "0 or num_kv_heads (" + std::to_string(shape.num_kv_heads) + ")");
    for (int b : o_.head_budgets)
      detail::require(b > o_.window.window, where, "head_budgets[h]", b,
                      "> window (" + std::to_string(o_.window.window) + ")");
  }
  int window() const { return o_.window.window; }
  const options& opts() const { return o_; }

  //! Tokens kept at prefill for `layer` and KV head `head`, window included.
  std::int64_t capacity(int layer, int head) const {
    const std::int64_t b = o_.head_budgets.empty() ? o_.budget : o_.head_budgets[head];
    return pyramid_capacity(layer, layers_, b, o_.window.window, o_.pyramid_beta);
  }
  //! Whether this layer reuses the previous layer's kept positions (ChunkKV).
  bool reuses() const { return o_.reuse_depth > 1 && layer_ % o_.reuse_depth != 0; }

  template <class L, class Src>
  void retain_prefill(L& l, const detail::prefill_input<Src>& in, detail::index_lists& keep) {
    const int P = l.pairs(), H = l.kv_heads();
    if (reuses() && l.previous_keep && l.previous_keep->offset.size() == std::size_t(P + 1) &&
        l.previous_keep_lengths == in.seq_len) {
      keep.offset = l.previous_keep->offset;
      keep.upload();
      keep.index = l.previous_keep->index;
      return;
    }
    auto r = detail::window_pooled_scores(l, in, o_.window);
    std::vector<std::int32_t> segs(l.batch), begins;
    std::vector<std::int64_t> begin_off(l.batch), k(P);
    std::int64_t max_segs = 1, heap_cap = 1;
    for (int b = 0; b < l.batch; ++b) {
      begin_off[b] = std::int64_t(begins.size());
      begins.insert(begins.end(), l.seqs[b].seg_begin.begin(), l.seqs[b].seg_begin.end());
      segs[b] = std::int32_t(l.seqs[b].seg_begin.size());
      max_segs = std::max<std::int64_t>(max_segs, segs[b]);
    }
    keep.offset.assign(P + 1, 0);
    for (int p = 0; p < P; ++p) {
      const std::int64_t n = r.n[p], cap = capacity(l.layer, p % H), w = n - r.limit[p];
      k[p] = n <= cap ? r.limit[p] : cap - w;
      heap_cap = std::max<std::int64_t>(heap_cap, k[p] + 1);
      keep.offset[p + 1] = keep.offset[p] + std::min(n, cap);
    }
    keep.upload();
    resize(keep.index, std::size_t(keep.offset[P]));
    fast_vector<std::int32_t> d_begins(begins.begin(), begins.end()), d_segs(segs.begin(), segs.end()),
        d_limit(r.limit.begin(), r.limit.end()), d_n(r.n.begin(), r.n.end());
    fast_vector<std::int64_t> d_begin_off(begin_off.begin(), begin_off.end()), d_off(r.off.begin(), r.off.end()),
        d_k(k.begin(), k.end());
    fast_vector<float> seg_score(std::size_t(P * max_segs)), hs(std::size_t(P * heap_cap));
    fast_vector<std::int32_t> seg_weight(std::size_t(P * max_segs)), hi(std::size_t(P * heap_cap));
    detail::parallel_for(std::int64_t(P) * max_segs,
                         detail::segment_window_scores{raw(r.pooled), raw(d_off), raw(d_limit), raw(d_begins),
                                                       raw(d_begin_off), raw(d_segs), raw(d_n), raw(seg_score),
                                                       raw(seg_weight), H, max_segs});
    detail::parallel_for(P, detail::keep_top_segments{raw(seg_score), raw(seg_weight), raw(d_begins), raw(d_begin_off),
                                                      raw(d_segs), raw(d_limit), raw(d_n), raw(d_k), raw(keep.d_offset),
                                                      raw(keep.index), raw(hs), raw(hi), heap_cap, max_segs, H});
  }
  template <class L>
  bool retain_append(L&, detail::index_lists&) {
    return false;
  }
  template <class L>
  void select(L& l) {
    detail::select_everything(l);
  }
  std::size_t bytes() const { return 0; }

private:
  options o_;
  int layer_ = 0, layers_ = 1;
};

SKV_NAMESPACE_END
