//! @file selector/window_retention.hpp
//! SnapKV's prefill retention (arXiv 2404.14469 §4.2), shared by every selector that compresses the prompt with an
//! observation window: score each prompt token by the attention the last `window` queries give it, smooth with a
//! max-pool, keep the top `capacity - window` tokens per (sequence, KV head) plus the window itself.
#pragma once

#include <skv/attention/window_scores.hpp>
#include <skv/detail/layer_state.hpp>
#include <skv/detail/topk.hpp>
#include <skv/error.hpp>

#include <string>

SKV_NAMESPACE_BEGIN

//! Options of the observation-window pre-filter.
struct window_options {
  int window = 32; //!< observation window w: the last w prompt queries
  int kernel = 7;  //!< max-pool kernel (odd; padding kernel / 2)
  void validate(const char* where) const {
    detail::require(window >= 1 && window <= 128, where, "window", window, "[1, 128]");
    detail::require(kernel >= 1 && kernel % 2 == 1, where, "kernel", kernel, "an odd number >= 1");
  }
};

namespace detail {

//! Per pair: top `k[p]` positions of `score` over [0, limit[p]) by (score desc, position asc), then the positions
//! [limit[p], n[p]) (the window); written sorted into `out` at `out_off[p]`.
struct keep_top_tokens {
  const float* score;
  const std::int64_t* score_off;
  const std::int32_t* limit;
  const std::int32_t* n;
  const std::int32_t* k;
  const std::int64_t* out_off;
  std::int32_t* out;
  float* heap_score; // [pairs, heap_cap]
  std::int32_t* heap_id;
  std::int64_t heap_cap;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const float* s = score + score_off[p];
    std::int32_t* o = out + out_off[p];
    int kept = 0;
    if (k[p] >= limit[p]) { // everything fits
      for (std::int32_t i = 0; i < limit[p]; ++i) o[kept++] = i;
    } else {
      float* hs = heap_score + p * heap_cap;
      std::int32_t* hi = heap_id + p * heap_cap;
      kept = budget_topk(
          limit[p], [s](std::int32_t i) { return s[i]; }, [](std::int32_t) { return std::int64_t(1); }, k[p], hs, hi);
      sort_ascending(hi, kept);
      for (int i = 0; i < kept; ++i) o[i] = hi[i];
    }
    for (std::int32_t i = limit[p]; i < n[p]; ++i) o[kept++] = i;
  }
};

//! Scores (pooled) for every pair of a prefill, laid out by `off` ([pairs + 1]); `limit[p] = n - window` is how far
//! the pooled scores are meaningful (the window itself is always kept).
struct window_score_result {
  fast_vector<float> pooled;
  fast_vector<float> raw_scores;
  std::vector<std::int64_t> off;
  std::vector<std::int32_t> limit, n;
};

template <class L, class Src>
window_score_result window_pooled_scores(const L& l, const prefill_input<Src>& in, const window_options& w) {
  window_score_result r;
  const int P = l.pairs(), H = l.kv_heads();
  window_scores(in.q, in.k, in.seq_row, in.seq_len, H, l.group(), l.dim(), w.window, r.raw_scores, r.off);
  r.limit.resize(P);
  r.n.resize(P);
  std::int64_t max_len = 1;
  for (int p = 0; p < P; ++p) {
    r.n[p] = in.seq_len[p / H];
    r.limit[p] = std::max(0, r.n[p] - w.window);
    max_len = std::max<std::int64_t>(max_len, r.n[p]);
  }
  resize(r.pooled, r.raw_scores.size());
  fast_vector<std::int64_t> d_off(r.off.begin(), r.off.end());
  fast_vector<std::int32_t> d_limit(r.limit.begin(), r.limit.end());
  parallel_for(std::int64_t(P) * max_len,
               max_pool{raw(r.raw_scores), raw(r.pooled), raw(d_off), raw(d_limit), max_len, w.kernel});
  return r;
}

//! SnapKV retention: per pair keep `capacity` tokens (top `capacity - window` by pooled score, plus the window);
//! prompts of at most `capacity` tokens are kept whole.
template <class L, class Src>
void retain_by_window(const L& l, const prefill_input<Src>& in, const window_options& w, std::int64_t capacity,
                      index_lists& keep) {
  const int P = l.pairs();
  auto r = window_pooled_scores(l, in, w);
  std::vector<std::int32_t> k(P);
  keep.offset.assign(P + 1, 0);
  std::int64_t heap_cap = 1;
  for (int p = 0; p < P; ++p) {
    const std::int64_t n = r.n[p];
    const std::int64_t kept = n <= capacity ? n : capacity;
    k[p] = n <= capacity ? r.limit[p] : std::int32_t(capacity - (n - r.limit[p]));
    heap_cap = std::max<std::int64_t>(heap_cap, k[p] + 1);
    keep.offset[p + 1] = keep.offset[p] + kept;
  }
  keep.upload();
  resize(keep.index, std::size_t(keep.offset[P]));
  fast_vector<float> hs(std::size_t(P * heap_cap));
  fast_vector<std::int32_t> hi(std::size_t(P * heap_cap));
  fast_vector<std::int64_t> d_off(r.off.begin(), r.off.end());
  fast_vector<std::int32_t> d_limit(r.limit.begin(), r.limit.end()), d_n(r.n.begin(), r.n.end()),
      d_k(k.begin(), k.end());
  parallel_for(P, keep_top_tokens{raw(r.pooled), raw(d_off), raw(d_limit), raw(d_n), raw(d_k), raw(keep.d_offset),
                                  raw(keep.index), raw(hs), raw(hi), heap_cap});
}

} // namespace detail
SKV_NAMESPACE_END
