//! @file selector/heavy_hitter_selector.hpp
//! H2O (Zhang et al., arXiv 2306.14048 §3): keep the "heavy hitters" — the tokens with the largest accumulated
//! attention — plus a window of recent tokens; evict the lowest-scoring older token whenever the cache exceeds its
//! budget. Scores are seeded at prefill by the observation-window attention (as the SnapKV/KVCache-Factory H2O
//! baseline does, no pooling) and every decode step adds the attention each token received, summed over the
//! query heads of its KV group. Eviction happens when a token is appended, using the scores up to the previous step.
#pragma once

#include <skv/selector/common.hpp>
#include <skv/selector/window_retention.hpp>
#include <skv/tensor.hpp>

#include <string>

SKV_NAMESPACE_BEGIN

namespace detail {
//! Scores of the kept prompt tokens, gathered from the window scores into store order.
struct seed_scores {
  const float* scores;
  const std::int64_t* score_off;
  const std::int64_t* keep_off;
  const std::int32_t* keep;
  float* acc;
  std::int64_t acc_cap, max_rows;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_rows, r = i % max_rows;
    if (r >= keep_off[p + 1] - keep_off[p]) return;
    acc[p * acc_cap + r] = scores[score_off[p] + keep[keep_off[p] + r]];
  }
};
//! Per pair over budget: keep all but the `len - budget` lowest-scoring tokens outside the recent window
//! (ties: the older token goes first); write the kept store indices and compact the scores the same way.
struct evict_lowest {
  const std::int32_t* length;
  const std::int64_t* keep_off;
  std::int32_t* keep;
  float* acc;
  float* heap_score;
  std::int32_t* heap_id;
  std::int64_t acc_cap, budget, recent;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int32_t n = length[p];
    std::int32_t* out = keep + keep_off[p];
    float* a = acc + p * acc_cap;
    const std::int64_t drop = n > budget ? n - budget : 0;
    const std::int32_t candidates = std::int32_t(n - recent > 0 ? n - recent : 0);
    float* hs = heap_score + p * (drop + 1);
    std::int32_t* hi = heap_id + p * (drop + 1);
    // the lowest scores rank best under negation; equal scores rank the lower (older) index first
    const int h = drop > 0 ? budget_topk(
                                 candidates, [a](std::int32_t i) { return -a[i]; },
                                 [](std::int32_t) { return std::int64_t(1); }, drop, hs, hi)
                           : 0;
    sort_ascending(hi, h);
    std::int32_t m = 0;
    int d = 0;
    for (std::int32_t i = 0; i < n; ++i) {
      if (d < h && hi[d] == i) {
        ++d;
        continue;
      }
      a[m] = a[i];
      out[m++] = i;
    }
    for (std::int32_t i = m; i < n; ++i) a[i] = 0.f; // slots the next tokens will take start from zero
  }
};
//! acc[p][j] += w[p][j] over the selected (= all retained) tokens.
struct accumulate_weights {
  const float* w;
  const std::int32_t* count;
  float* acc;
  std::int64_t w_stride, acc_cap, max_n;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / max_n, j = i % max_n;
    if (j < count[p]) acc[p * acc_cap + j] += w[p * w_stride + j];
  }
};
} // namespace detail

struct heavy_hitter_selector {
  struct options {
    int budget = 1024;            //!< tokens kept per (sequence, KV head)
    float recent_ratio = 0.5f;    //!< share of the budget for the recent window (the rest: heavy hitters)
    window_options window{32, 1}; //!< prefill seeding: observation window, no pooling
  };
  static constexpr bool needs_summaries = false;

  heavy_hitter_selector(const options& o, int, int) : o_(o) {}
  void validate(const model_shape&) const {
    constexpr const char* where = "skv::heavy_hitter_selector";
    o_.window.validate(where);
    detail::require(o_.recent_ratio > 0.f && o_.recent_ratio < 1.f, where, "recent_ratio", o_.recent_ratio, "(0, 1)");
    detail::require(recent() >= 1 && o_.budget - recent() >= 1, where, "budget", o_.budget,
                    "a budget that leaves at least one heavy-hitter and one recent token (>= 2)");
  }
  int window() const { return o_.window.window; }
  std::int64_t recent() const { return std::int64_t(float(o_.budget) * o_.recent_ratio); }

  template <class L, class Src>
  void retain_prefill(L& l, const detail::prefill_input<Src>& in, detail::index_lists& keep) {
    const int P = l.pairs();
    auto r = detail::window_pooled_scores(l, in, o_.window);
    // heavy hitters among [0, n - recent) by seeded score, plus the last `recent` tokens
    std::vector<std::int32_t> limit(P), k(P);
    keep.offset.assign(P + 1, 0);
    std::int64_t heap_cap = 1, max_rows = 1;
    for (int p = 0; p < P; ++p) {
      const std::int64_t n = r.n[p];
      limit[p] = std::int32_t(std::max<std::int64_t>(0, n - recent()));
      k[p] = std::int32_t(n <= o_.budget ? limit[p] : o_.budget - recent());
      heap_cap = std::max<std::int64_t>(heap_cap, k[p] + 1);
      keep.offset[p + 1] = keep.offset[p] + std::min<std::int64_t>(n, o_.budget);
      max_rows = std::max<std::int64_t>(max_rows, keep.offset[p + 1] - keep.offset[p]);
    }
    keep.upload();
    resize(keep.index, std::size_t(keep.offset[P]));
    fast_vector<float> hs(std::size_t(P * heap_cap));
    fast_vector<std::int32_t> hi(std::size_t(P * heap_cap));
    fast_vector<std::int64_t> d_off(r.off.begin(), r.off.end());
    fast_vector<std::int32_t> d_limit(limit.begin(), limit.end()), d_n(r.n.begin(), r.n.end()), d_k(k.begin(), k.end());
    detail::parallel_for(P, detail::keep_top_tokens{raw(r.raw_scores), raw(d_off), raw(d_limit), raw(d_n), raw(d_k),
                                                    raw(keep.d_offset), raw(keep.index), raw(hs), raw(hi), heap_cap});
    acc_cap_ = o_.budget + 1;
    acc_.assign(std::size_t(P * acc_cap_), 0.f);
    detail::parallel_for(std::int64_t(P) * max_rows,
                         detail::seed_scores{raw(r.raw_scores), raw(d_off), raw(keep.d_offset), raw(keep.index),
                                             raw(acc_), acc_cap_, max_rows});
  }

  template <class L>
  bool retain_append(L& l, detail::index_lists& keep) {
    const int P = l.pairs();
    bool over = false;
    keep.offset.assign(P + 1, 0);
    for (int p = 0; p < P; ++p) {
      const std::int64_t n = l.store.length(p);
      over |= n > o_.budget;
      keep.offset[p + 1] = keep.offset[p] + std::min<std::int64_t>(n, o_.budget);
    }
    // the new token joins with score 0 (its store index is length - 1 <= budget < acc_cap_)
    if (!over) return false;
    keep.upload();
    resize(keep.index, std::size_t(keep.offset[P]));
    std::int64_t max_drop = 1;
    for (int p = 0; p < P; ++p) max_drop = std::max<std::int64_t>(max_drop, l.store.length(p) - o_.budget);
    resize(hs_, std::size_t(P * (max_drop + 1)));
    resize(hi_, std::size_t(P * (max_drop + 1)));
    detail::parallel_for(P, detail::evict_lowest{raw(l.store.layout.d_length), raw(keep.d_offset), raw(keep.index),
                                                 raw(acc_), raw(hs_), raw(hi_), acc_cap_, o_.budget, recent()});
    return true;
  }

  template <class L>
  void select(L& l) {
    detail::select_everything(l);
  }

  //! Adds this step's attention weights (selection order = store order, since everything is selected).
  template <class L>
  void observe(L& l, const fast_vector<float>& w, std::int64_t stride) {
    const int P = l.pairs();
    std::int64_t max_n = 1;
    for (auto c : l.sel.count_host) max_n = std::max<std::int64_t>(max_n, c);
    detail::parallel_for(std::int64_t(P) * max_n,
                         detail::accumulate_weights{raw(w), raw(l.sel.count), raw(acc_), stride, acc_cap_, max_n});
  }

  //! Accumulated score of the token at store index `i` of pair `p` (for tests and tools).
  float score(int p, std::int64_t i) const { return acc_[std::size_t(p * acc_cap_ + i)]; }
  std::size_t bytes() const { return allocated_bytes(acc_) + allocated_bytes(hs_) + allocated_bytes(hi_); }

private:
  options o_;
  fast_vector<float> acc_, hs_;
  fast_vector<std::int32_t> hi_;
  std::int64_t acc_cap_ = 1;
};

SKV_NAMESPACE_END
