//! @file selector/keep_heavy_hitters.hpp
//! H2O's retention (Zhang et al., arXiv 2306.14048 §3): keep the "heavy hitters" — the tokens with the largest
//! accumulated attention — plus a window of recent tokens; evict the lowest-scoring older token whenever the cache
//! exceeds its budget. Scores are seeded at prefill by the observation-window attention (as the SnapKV/KVCache-
//! Factory H2O baseline does, no pooling) and every decode step adds the attention each token received, summed over
//! the query heads of its KV group (it observes `kv_cache::step`). Eviction happens when a token is appended, using
//! the scores up to the previous step. The accumulated scores are this policy's own state.
#pragma once

#include <skv/detail/retention_kernels.hpp>
#include <skv/error.hpp>
#include <skv/policy.hpp>

#include <string>
#include <vector>

SKV_NAMESPACE_BEGIN

namespace detail {
//! Scores of the kept prompt tokens, gathered from the window scores into store order.
struct seed_scores {
  const float* scores;
  const std::int64_t* score_off;
  const std::int32_t* keep;
  const std::int32_t* keep_len;
  std::int64_t stride;
  float* acc;
  std::int64_t acc_cap;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    const std::int64_t p = i / stride, r = i % stride;
    if (r < keep_len[p]) acc[p * acc_cap + r] = scores[score_off[p] + keep[p * stride + r]];
  }
};
//! Per pair over budget: keep all but the `len - budget` lowest-scoring tokens outside the recent window (ties: the
//! older token goes first); write the kept store indices and compact the scores the same way.
struct evict_lowest {
  const std::int32_t* length;
  std::int32_t* keep;
  std::int64_t stride;
  float* acc;
  float* heap_score;
  std::int32_t* heap_id;
  std::int64_t acc_cap, heap_cap, budget, recent;
  SKV_HOST_DEVICE void operator()(std::int64_t p) const {
    const std::int32_t n = length[p];
    std::int32_t* out = keep + p * stride;
    float* a = acc + p * acc_cap;
    const std::int64_t drop = n > budget ? n - budget : 0;
    const std::int32_t candidates = std::int32_t(n - recent > 0 ? n - recent : 0);
    std::int32_t* dropped = heap_id + p * heap_cap;
    // the lowest scores rank best under negation; equal scores rank the lower (older) index first
    std::int64_t d = 0;
    if (drop > 0)
      take_top_units(
          candidates, [a](std::int32_t i) { return -a[i]; }, [](std::int32_t) { return std::int64_t(1); }, drop,
          heap_score + p * heap_cap, dropped, [&](std::int32_t i, std::int64_t) { dropped[d++] = i; });
    std::int32_t m = 0;
    std::int64_t next = 0;
    for (std::int32_t i = 0; i < n; ++i) {
      if (next < d && dropped[next] == i) {
        ++next;
        continue;
      }
      a[m] = a[i];
      out[m++] = i;
    }
    for (std::int32_t i = m; i < n; ++i) a[i] = 0.f; // slots the next tokens will take start from zero
  }
};
//! acc[p][j] += w[p][j] over the selected (= all retained, in store order) tokens.
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

//! Heavy hitters by accumulated attention plus a recent window, within `budget` tokens per (sequence, KV head).
struct keep_heavy_hitters {
  struct options {
    float recent_ratio = 0.5f; //!< share of the budget for the recent window (the rest: heavy hitters)
    int window = 32;           //!< prefill seeding: the observation window (no pooling)
  };

  keep_heavy_hitters(const options& o, const policy_init& init, int budget)
      : o_(o), budget_(budget), mem_(init.memory.of(tier::fast)), acc_(mem_), hs_(mem_), hi_(mem_),
        kv_heads_(init.shape.num_kv_heads) {}

  void validate() const {
    constexpr const char* where = "skv::keep_heavy_hitters";
    detail::require(o_.window >= 1 && o_.window <= 128, where, "window", o_.window, "[1, 128]");
    detail::require(o_.recent_ratio > 0.f && o_.recent_ratio < 1.f, where, "recent_ratio", o_.recent_ratio, "(0, 1)");
    detail::require(recent() >= 1 && budget_ - recent() >= 1, where, "budget", budget_,
                    "a budget that leaves at least one heavy-hitter and one recent token (>= 2)");
  }
  int window() const { return o_.window; }
  std::int64_t recent() const { return std::int64_t(float(budget_) * o_.recent_ratio); }
  std::int64_t max_retained(const reservation& r) const { return std::min<std::int64_t>(r.max_tokens, budget_ + 1); }
  std::size_t bytes() const { return allocated_bytes(acc_) + allocated_bytes(hs_) + allocated_bytes(hi_); }
  void reserve(const reservation& r) {
    const auto P = std::size_t(r.max_batch) * std::size_t(kv_heads_);
    ensure_size(acc_, P * std::size_t(acc_cap()));
    ensure_size(hs_, P * 2);
    ensure_size(hi_, P * 2);
  }

  template <class Src>
  void retain_prefill(const prefill_context<Src>& ctx, retention_list& keep) {
    const layer_info& li = ctx.info;
    const int P = li.pairs();
    auto r = detail::window_pooled_scores(ctx, o_.window, 1, int(recent()), mem_);
    std::vector<std::int64_t> k(P);
    std::int64_t heap_cap = 1;
    for (int p = 0; p < P; ++p) {
      const std::int64_t n = r.n[p];
      k[p] = n <= budget_ ? r.limit[p] : budget_ - recent();
      heap_cap = std::max<std::int64_t>(heap_cap, k[p] + 1);
      keep.length_host[p] = std::min<std::int64_t>(n, budget_);
    }
    fast_vector<std::int64_t> d_k(mem_);
    fast_vector<std::int32_t> d_len(mem_);
    detail::upload(d_k, k, li.stream);
    detail::upload(d_len, std::vector<std::int32_t>(keep.length_host.begin(), keep.length_host.end()), li.stream);
    fast_vector<float> hs(std::size_t(P * heap_cap), 0.f, mem_);
    fast_vector<std::int32_t> hi(std::size_t(P * heap_cap), 0, mem_);
    parallel_for(P,
                 detail::keep_top_tokens{raw(r.raw_scores), raw(r.d_off), raw(r.d_limit), raw(r.d_n), raw(d_k),
                                         keep.index, keep.stride, raw(hs), raw(hi), heap_cap},
                 li.stream);
    ensure_size(acc_, std::size_t(P) * std::size_t(acc_cap()));
    thrust::fill_n(detail::on(li.stream), acc_.begin(), std::int64_t(P) * acc_cap(), 0.f);
    parallel_for(
        std::int64_t(P) * keep.stride,
        detail::seed_scores{raw(r.raw_scores), raw(r.d_off), keep.index, raw(d_len), keep.stride, raw(acc_), acc_cap()},
        li.stream);
    synchronize(li.stream);
  }

  template <class T>
  bool retain_append(const append_context<T>& ctx, retention_list& keep) {
    const layer_info& li = ctx.info;
    const int P = li.pairs();
    std::int64_t max_drop = 0;
    for (int p = 0; p < P; ++p) {
      const std::int64_t n = ctx.store.length_host[p];
      max_drop = std::max(max_drop, n - budget_);
      keep.length_host[p] = std::min<std::int64_t>(n, budget_);
    }
    // the new token joined with score 0 (its store index is length - 1 <= budget < acc_cap())
    if (max_drop <= 0) return false;
    const std::int64_t heap_cap = max_drop + 1; // 2 in steady state: one token over the budget
    ensure_size(hs_, std::size_t(P * heap_cap));
    ensure_size(hi_, std::size_t(P * heap_cap));
    parallel_for(P,
                 detail::evict_lowest{ctx.store.length, keep.index, keep.stride, raw(acc_), raw(hs_), raw(hi_),
                                      acc_cap(), heap_cap, budget_, recent()},
                 li.stream);
    return true;
  }

  //! Adds this step's attention weights (everything retained is selected, in store order).
  template <class T, class Sum>
  void observe(const select_context<T, Sum>& ctx, const selection& sel, const attention_weights_view& w) {
    std::int64_t max_n = 1;
    for (auto b : sel.bound) max_n = std::max(max_n, b);
    parallel_for(std::int64_t(ctx.info.pairs()) * max_n,
                 detail::accumulate_weights{w.weight, sel.count, raw(acc_), w.stride, acc_cap(), max_n},
                 ctx.info.stream);
  }

  //! Accumulated score of the token at store index `i` of pair `p` (tests and tools; waits for the device).
  float score(int p, std::int64_t i) const {
    float x = 0.f;
    synchronize({});
    copy_bytes(&x, raw(acc_) + std::size_t(p * acc_cap() + i), sizeof x, {});
    synchronize({});
    return x;
  }

private:
  std::int64_t acc_cap() const { return budget_ + 1; }

  options o_;
  int budget_;
  memory_resource* mem_;
  fast_vector<float> acc_, hs_;
  fast_vector<std::int32_t> hi_;
  int kv_heads_;
};

SKV_NAMESPACE_END
