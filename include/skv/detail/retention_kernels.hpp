//! @file detail/retention_kernels.hpp
//! Device building blocks of the retention policies: observation-window scores per prompt token (SnapKV,
//! arXiv 2404.14469 §4.2), and the per-pair "keep the top units, then the protected tail" rule, at token or
//! segment granularity, written into a `retention_list`.
#pragma once

#include <skv/detail/topk.hpp>
#include <skv/detail/window_scores.hpp>
#include <skv/policy.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Observation-window scores of a prefill, per pair, laid out by `off` ([pairs + 1]); `limit[p] = n - tail` is
//! where the protected tail (always kept) begins.
struct window_score_result {
  fast_vector<float> raw_scores, pooled;
  std::vector<std::int64_t> off;
  std::vector<std::int32_t> limit, n;
  fast_vector<std::int64_t> d_off;
  fast_vector<std::int32_t> d_limit, d_n;
};

template <class Src>
window_score_result window_pooled_scores(const prefill_context<Src>& ctx, int window, int kernel, int tail,
                                         memory_resource* mem) {
  const layer_info& li = ctx.info;
  const int P = li.pairs(), H = li.kv_heads();
  window_score_result r{
      fast_vector<float>(mem),        fast_vector<float>(mem),       {}, {}, {}, fast_vector<std::int64_t>(mem),
      fast_vector<std::int32_t>(mem), fast_vector<std::int32_t>(mem)};
  window_scores(ctx.q, ctx.k, ctx.seq_row, ctx.seq_len, H, li.group(), li.dim(), window, li.softmax_scale, mem,
                li.stream, r.raw_scores, r.off);
  r.limit.resize(P);
  r.n.resize(P);
  std::int64_t max_len = 1;
  for (int p = 0; p < P; ++p) {
    r.n[p] = ctx.seq_len[p / H];
    r.limit[p] = std::max(0, r.n[p] - tail);
    max_len = std::max<std::int64_t>(max_len, r.n[p]);
  }
  upload(r.d_off, r.off, li.stream);
  upload(r.d_limit, r.limit, li.stream);
  upload(r.d_n, r.n, li.stream);
  if (kernel > 1) {
    resize(r.pooled, r.raw_scores.size());
    parallel_for(std::int64_t(P) * max_len,
                 max_pool{raw(r.raw_scores), raw(r.pooled), raw(r.d_off), raw(r.d_limit), max_len, kernel}, li.stream);
  }
  synchronize(li.stream); // the host vectors above are pageable
  return r;
}

//! Per pair: the top `k[p]` positions of `score` over [0, limit[p]) (ties: lower position first), then the tail
//! [limit[p], n[p]); written increasing at `out + p * stride`.
struct keep_top_tokens {
  const float* score;
  const std::int64_t* score_off;
  const std::int32_t* limit;
  const std::int32_t* n;
  const std::int64_t* k;
  std::int32_t* out;
  std::int64_t stride;
  float* heap_score; // [pairs, heap_cap]
  std::int32_t* heap_id;
  std::int64_t heap_cap;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const float* s = score + score_off[p];
    std::int32_t* o = out + p * stride;
    std::int64_t m = 0;
    if (k[p] >= limit[p]) { // everything before the tail fits
      for (std::int32_t i = 0; i < limit[p]; ++i) o[m++] = i;
    } else {
      take_top_units(
          limit[p], scores_at{s}, [](std::int32_t) { return std::int64_t(1); }, k[p], heap_score + p * heap_cap,
          heap_id + p * heap_cap, [&](std::int32_t i, std::int64_t) { o[m++] = i; });
    }
    for (std::int32_t i = limit[p]; i < n[p]; ++i) o[m++] = i;
  }
};

//! Per pair and closed segment: the summed score of its tokens before the tail, and how many there are.
struct segment_window_scores {
  const float* score;
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
    for (std::int32_t t = lo; t < hi; ++t) sum += score[score_off[p] + t];
    seg_score[i] = sum;
    seg_weight[i] = hi > lo ? hi - lo : 0;
  }
};

//! Per pair: whole segments in rank order under `k[p]` tokens (the last one cut to its first tokens), then the
//! tail [limit, n); written increasing at `out + p * stride`.
struct keep_top_segments {
  const float* seg_score;
  const std::int32_t* seg_weight;
  const std::int32_t* begins;
  const std::int64_t* begin_off;
  const std::int32_t* segs;
  const std::int32_t* limit;
  const std::int32_t* n;
  const std::int64_t* k;
  std::int32_t* out;
  std::int64_t stride;
  float* heap_score;
  std::int32_t* heap_id;
  std::int64_t heap_cap, max_segs;
  int kv_heads;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int64_t b = p / kv_heads;
    const float* sc = seg_score + p * max_segs;
    const std::int32_t* w = seg_weight + p * max_segs;
    const std::int32_t* bs = begins + begin_off[b];
    std::int32_t* o = out + p * stride;
    std::int64_t m = 0;
    take_top_units(
        segs[b], scores_at{sc}, [w](std::int32_t i) { return std::int64_t(w[i]); }, k[p], heap_score + p * heap_cap,
        heap_id + p * heap_cap,
        [&](std::int32_t i, std::int64_t take) {
          for (std::int64_t t = 0; t < take; ++t) o[m++] = bs[i] + std::int32_t(t);
        });
    for (std::int32_t t = limit[p]; t < n[p]; ++t) o[m++] = t;
  }
};

//! Per pair: indices [0, head) and [len - tail, len) of a list of length len (merged when they overlap), where len
//! is `length[p]` (device) or, when null, `seq_len[p / kv_heads]`.
struct keep_head_tail {
  const std::int32_t* length;
  const std::int32_t* seq_len;
  int kv_heads;
  std::int64_t head, tail;
  std::int32_t* out;
  std::int64_t stride;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int64_t n = length != nullptr ? length[p] : seq_len[p / kv_heads];
    const std::int64_t h = head < n ? head : n, t0 = (n - tail) > h ? (n - tail) : h;
    std::int32_t* o = out + p * stride;
    std::int64_t m = 0;
    for (std::int64_t i = 0; i < h; ++i) o[m++] = std::int32_t(i);
    for (std::int64_t i = t0; i < n; ++i) o[m++] = std::int32_t(i);
  }
};

//! Host lengths of a head + tail retention.
inline std::int64_t head_tail_length(std::int64_t n, std::int64_t head, std::int64_t tail) {
  const std::int64_t h = std::min(head, n);
  return h + (n - std::max(h, n - tail));
}

//! Keeps every prompt position of every pair (prompts shorter than a policy's capacity, or keep-all).
template <class Src>
void retain_whole_prompts(const prefill_context<Src>& ctx, retention_list& keep, memory_resource* mem) {
  fast_vector<std::int32_t> len(mem);
  upload(len, std::vector<std::int32_t>(ctx.seq_len.begin(), ctx.seq_len.end()), ctx.info.stream);
  parallel_for(ctx.info.pairs(),
               keep_head_tail{nullptr, raw(len), ctx.info.kv_heads(), 0, keep.stride, keep.index, keep.stride},
               ctx.info.stream);
  for (int p = 0; p < ctx.info.pairs(); ++p) keep.length_host[p] = ctx.seq_len[p / ctx.info.kv_heads()];
  synchronize(ctx.info.stream);
}

} // namespace detail
SKV_NAMESPACE_END
