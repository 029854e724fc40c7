//! @file detail/topk.hpp
//! Budgeted top-k as `SKV_HOST_DEVICE` code (this CCCL has no DeviceTopK).
//!
//! "Take units in rank order until their sizes reach a token budget" is the selection rule of SentenceKV, Quest,
//! ChunkKV and SnapKV (units of size 1). Two exact algorithms, both deterministic (equal scores rank by lower index
//! first) and allocation-free:
//! - `budget_cut`: finds where the budget runs out -- from a sampled threshold and one collecting pass
//!   (`sampled_cut`), else by a weighted radix select (histograms of the scores, refined until the bin where the
//!   budget runs out holds at most `budget + 1` units, which are then ranked); a last pass emits the taken units in
//!   index order. O(n) per pass, whatever the units' sizes.
//! - `budget_topk`: a min-heap keeps the current best units; the worst one is dropped as soon as the others cover
//!   the budget. O(n log h) with h <= budget + 1 -- slow when many small units share the budget (h large), kept for
//!   the `whole` rule and as the fallback for NaN scores.
#pragma once

#include <skv/config.hpp>
#include <skv/detail/simd.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

SKV_NAMESPACE_BEGIN
namespace detail {

//! True when (sa, ia) ranks below (sb, ib): lower score, or equal score and higher index.
SKV_HOST_DEVICE SKV_FORCEINLINE bool ranks_below(float sa, std::int32_t ia, float sb, std::int32_t ib) {
  return sa < sb || (sa == sb && ia > ib);
}

//! Swaps units `a` and `b` of parallel score / id arrays.
SKV_HOST_DEVICE SKV_FORCEINLINE void swap_units(float* score, std::int32_t* id, int a, int b) {
  const float s = score[a];
  score[a] = score[b];
  score[b] = s;
  const std::int32_t i = id[a];
  id[a] = id[b];
  id[b] = i;
}

//! The scratch entries (`budget + 1`, saturated) the budgeted top-k needs for `budget`.
SKV_HOST_DEVICE SKV_FORCEINLINE int budget_scratch(std::int64_t budget) {
  return budget < 0x7ffffffe ? int(budget) + 1 : 0x7fffffff;
}

//! Min-heap (worst unit at the root) over parallel arrays.
struct rank_heap {
  float* score;
  std::int32_t* id;
  int size = 0;

  SKV_HOST_DEVICE void swap_at(int a, int b) { swap_units(score, id, a, b); }
  SKV_HOST_DEVICE void push(float s, std::int32_t i) {
    int c = size++;
    score[c] = s;
    id[c] = i;
    while (c > 0) {
      const int parent = (c - 1) / 2;
      if (!ranks_below(score[c], id[c], score[parent], id[parent])) break;
      swap_at(c, parent);
      c = parent;
    }
  }
  SKV_HOST_DEVICE void sift_down(int c, int n) {
    for (;;) {
      int w = c;
      const int l = 2 * c + 1, r = l + 1;
      if (l < n && ranks_below(score[l], id[l], score[w], id[w])) w = l;
      if (r < n && ranks_below(score[r], id[r], score[w], id[w])) w = r;
      if (w == c) return;
      swap_at(c, w);
      c = w;
    }
  }
  SKV_HOST_DEVICE void pop() {
    --size;
    score[0] = score[size];
    id[0] = id[size];
    sift_down(0, size);
  }
  //! Sorts the heap's units best first, in place (heap sort: repeatedly move the worst to the back).
  SKV_HOST_DEVICE void sort_best_first() {
    for (int n = size; n > 1; --n) {
      swap_at(0, n - 1);
      sift_down(0, n - 1);
    }
  }
};

//! Units `i in [0, n)` with `weight(i) > 0` compete; returns how many were kept in `heap` (scratch of capacity
//! `budget + 1`), sorted best first. The kept units are the shortest best-ranked prefix whose weights reach
//! `budget` (all units when they do not).
template <class Score, class Weight>
SKV_HOST_DEVICE int budget_topk(std::int32_t n, Score score, Weight weight, std::int64_t budget, float* heap_score,
                                std::int32_t* heap_id) {
  rank_heap heap{heap_score, heap_id, 0};
  std::int64_t total = 0;
  if (budget <= 0) return 0;
  for (std::int32_t i = 0; i < n; ++i) {
    const float s = score(i); // a unit that cannot displace the worst kept one is skipped before its weight is read
    if (heap.size > 0 && total >= budget && !ranks_below(heap.score[0], heap.id[0], s, i)) continue;
    const std::int64_t w = weight(i);
    if (w <= 0) continue;
    heap.push(s, i);
    total += w;
    while (heap.size > 1 && total - weight(heap.id[0]) >= budget) {
      total -= weight(heap.id[0]);
      heap.pop();
    }
  }
  heap.sort_best_first();
  return heap.size;
}

//! Where the budget runs out in the ranking: the units ranked above (`score`, `id`) are taken whole and unit `id`
//! takes `take` tokens; with `all`, the units' weights do not reach the budget and every one is taken.
struct cut_point {
  float score = 0.f;
  std::int32_t id = -1;
  std::int64_t take = 0;
  bool all = false;
};

//! An unsigned key with the float order: a < b as floats <=> key(a) < key(b) (NaN excluded; -0 keys as +0).
SKV_HOST_DEVICE SKV_FORCEINLINE std::uint32_t order_key(float s) {
  std::uint32_t u;
  std::memcpy(&u, &s, sizeof u);
  if (s == 0.f) u = 0;
  return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

//! A score functor over an array: the passes over every unit then skip 16 scores at a time below a threshold.
struct scores_at {
  const float* p;
  SKV_HOST_DEVICE SKV_FORCEINLINE float operator()(std::int32_t i) const { return p[i]; }
};

//! The first unit in [i, n) whose score is not below `t` (NaN is not), or n.
template <class Score>
SKV_HOST_DEVICE SKV_FORCEINLINE std::int32_t next_not_below(const Score& score, std::int32_t i, std::int32_t n,
                                                            float t) {
  if constexpr (std::is_same_v<Score, scores_at>) {
#if defined(SKV_HAVE_SIMD)
    for (; i + simd::lanes <= n; i += simd::lanes) {
      const unsigned hit = simd::not_below(score.p + i, t);
      if (hit != 0) return i + __builtin_ctz(hit);
    }
#else
    for (; i + 16 <= n; i += 16) { // a branch-free test of 16 scores
      bool any = false;
      for (int l = 0; l < 16; ++l) any |= !(score.p[i + l] < t);
      if (any) break;
    }
#endif
  }
  while (i < n && score(i) < t) ++i;
  return i;
}

//! The cut among `m` collected units (`sc`, `id`, permuted in place) whose weights total at least `need`: the unit
//! where `need` runs out in their rank order, and the tokens it takes. A weighted quickselect (pivot: the median of
//! three by rank): each round partitions the range around the pivot and keeps the side the cut lies in, so expected
//! O(m). Returns the cut's position: the units ranked above it are left in front of it.
template <class Weight>
SKV_HOST_DEVICE int select_cut(float* sc, std::int32_t* id, int m, Weight weight, std::int64_t need, cut_point& cut) {
  auto below = [&](int x, int y) { return ranks_below(sc[x], id[x], sc[y], id[y]); };
  auto swap_at = [&](int x, int y) { swap_units(sc, id, x, y); };
  int l = 0, r = m; // the cut lies in [l, r), whose weights total at least `need`
  while (r - l > 1) {
    const int a = l, b = l + (r - l) / 2, c = r - 1;
    const int p = below(a, b) ? (below(b, c) ? b : (below(a, c) ? c : a)) : (below(a, c) ? a : (below(b, c) ? c : b));
    swap_at(p, r - 1);
    const float ps = sc[r - 1];
    const std::int32_t pid = id[r - 1];
    int front = l; // [l, front): ranked above the pivot
    std::int64_t above = 0;
    for (int i = l; i < r - 1; ++i) { // branch-free: [front, i) rank below the pivot, so the swap is harmless
      const float s = sc[i];
      const std::int32_t u = id[i];
      const bool up = ranks_below(ps, pid, s, u);
      sc[i] = sc[front];
      id[i] = id[front];
      sc[front] = s;
      id[front] = u;
      above += up ? weight(u) : 0;
      front += up ? 1 : 0;
    }
    swap_at(front, r - 1);
    if (above >= need) {
      r = front;
      continue;
    }
    const std::int64_t w = weight(id[front]);
    if (above + w >= need) {
      cut = cut_point{sc[front], id[front], need - above, false};
      return front;
    }
    need -= above + w;
    l = front + 1;
  }
  cut = cut_point{sc[l], id[l], need, false};
  return l;
}

//! Collects the units scoring at least `t` with weight > 0 into the scratch (scores tested 16 at a time through
//! `scores_at`): their number `m` and total weight. False on a NaN score or when more than `cap` qualify.
template <class Score, class Weight>
SKV_HOST_DEVICE bool collect_at_least(std::int32_t n, const Score& score, const Weight& weight, float t, int cap,
                                      float* scratch_score, std::int32_t* scratch_id, int& m, std::int64_t& total) {
  m = 0;
  total = 0;
  for (std::int32_t i = next_not_below(score, 0, n, t); i < n; i = next_not_below(score, i + 1, n, t)) {
    const float s = score(i);
    if (s != s) return false;
    const std::int64_t w = weight(i);
    if (w <= 0) continue;
    if (m == cap) return false;
    scratch_score[m] = s;
    scratch_id[m++] = i;
    total += w;
  }
  return true;
}

//! The cut when every unit scoring below `floor` is known to rank below it (the sketched selection's pruned
//! segments): one collecting pass over the units at or above `floor`, then `select_cut`. False when they do not
//! reach the budget or do not fit the scratch (the caller then ranks every unit).
template <class Score, class Weight>
SKV_HOST_DEVICE bool floor_cut(std::int32_t n, Score score, Weight weight, std::int64_t budget, int cap, float floor,
                               float* scratch_score, std::int32_t* scratch_id, cut_point& cut) {
  int m = 0;
  std::int64_t total = 0;
  if (!collect_at_least(n, score, weight, floor, cap, scratch_score, scratch_id, m, total) || total < budget)
    return false;
  select_cut(scratch_score, scratch_id, m, weight, budget, cut);
  return true;
}

//! The fast path of `budget_cut` for many units: a threshold t from a strided sample of 256 of them (128 on the
//! GPU) -- the j best samples reach the budget when their weights are scaled up by the stride, and t is the score
//! of sample j + 2 sqrt(j) + 2, a margin for the sampling error -- then one pass that collects every unit scoring
//! >= t and finds the cut among them (if those fall short of the budget, again with twice and four times the margin).
//! When the sample says few units have weight (at most cap / 2), the pass collects every finitely scored unit instead.
//! Exact whenever their weights reach the budget (the cut is then among them) and they fit the scratch; otherwise
//! (a sample that misjudged, NaN scores) false, and the caller goes on to the radix select. Two cheap passes where
//! the radix select makes four with a histogram (a dependent add per unit when most scores share a few bins).
template <class Score, class Weight>
SKV_HOST_DEVICE bool sampled_cut(std::int32_t n, Score score, Weight weight, std::int64_t budget, int cap,
                                 float* scratch_score, std::int32_t* scratch_id, cut_point& cut) {
#if defined(__CUDA_ARCH__)
  constexpr int sample = 128; // one thread per pair: keep its local memory small
#else
  constexpr int sample = 256; // measured: 512 cost ~30 us more per step at 128K (llama3_8b, 2 threads)
#endif
  if (n < 4 * sample) return false;
  const std::int32_t stride = n / sample;
  float ss[sample];
  std::int32_t si[sample];
  int ms = 0;
  std::int64_t sampled = 0;
  for (int j = 0; j < sample; ++j) {
    const std::int32_t i = j * stride;
    const float s = score(i);
    if (s != s) return false;
    const std::int64_t w = weight(i);
    if (w <= 0) continue;
    ss[ms] = s;
    si[ms++] = i;
    sampled += w;
  }
  // few units compete (a pre-filter emptied most): rank every unit with a finite score -- the -inf ones, skipped 16
  // at a time, rank below them all
  if (2.0 * ms * stride <= double(cap) &&
      floor_cut(n, score, weight, budget, cap, -FLT_MAX, scratch_score, scratch_id, cut))
    return true;
  if (ms == 0 || double(sampled) * stride < double(budget)) return false;
  // the best samples whose own weights, scaled up by `stride`, reach the budget (j of them), plus a margin for the
  // sampling error: the threshold is the score of the last of them. Should the units at or above it still fall
  // short of the budget, the margin widens (twice) before the caller's radix select takes over.
  cut_point c;
  const int j = select_cut(ss, si, ms, weight, (budget + stride - 1) / stride, c) + 1;
  auto one = [](std::int32_t) -> std::int64_t { return 1; };
  int jm = j;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int margin = (2 + int(2.0 * ::sqrt(double(jm)))) << attempt;
    const int wider = jm + margin < ms ? jm + margin : ms;
    if (wider == jm || double(wider) * stride > cap) return false;
    jm = wider;
    const float t = ss[select_cut(ss, si, ms, one, jm, c)];
    int m = 0;
    std::int64_t total = 0;
    if (!collect_at_least(n, score, weight, t, cap, scratch_score, scratch_id, m, total)) return false;
    if (total < budget) continue;
    select_cut(scratch_score, scratch_id, m, weight, budget, cut);
    return true;
  }
  return false;
}

//! Finds the cut of the budgeted ranking of units `i in [0, n)` with `weight(i) > 0` -- the same one `budget_topk`
//! keeps -- by ranking them all in the scratch where they fit (n <= `cap`), by `sampled_cut` where it answers, else
//! by a weighted radix select on `order_key` of the scores: the candidates' key range [lo, hi] is split into at most
//! 1024 bins (equal scores share a bin, a higher bin holds only higher scores), the bin where the budget runs out
//! becomes the next range, until it holds at most `cap` units; those are ranked in the scratch (`cap` entries). At
//! most four levels. Returns false (the caller uses the heap) when a score is NaN.
template <class Score, class Weight>
SKV_HOST_DEVICE bool budget_cut(std::int32_t n, Score score, Weight weight, std::int64_t budget, int cap,
                                float* scratch_score, std::int32_t* scratch_id, cut_point& cut) {
#if defined(__CUDA_ARCH__)
  constexpr int radix_bits = 6; // one thread per pair: keep its local memory small
#else
  constexpr int radix_bits = 10;
#endif
  constexpr int bins = 1 << radix_bits;
  if (n <= cap) { // every unit fits the scratch: rank them there (the histograms would cost more than the units)
    int m = 0;
    std::int64_t total = 0;
    if (!collect_at_least(n, score, weight, -INFINITY, cap, scratch_score, scratch_id, m, total)) return false;
    if (total < budget) {
      cut.all = true;
      return true;
    }
    select_cut(scratch_score, scratch_id, m, weight, budget, cut);
    return true;
  }
  if (sampled_cut(n, score, weight, budget, cap, scratch_score, scratch_id, cut)) return true;
  std::uint32_t lo = 0xffffffffu, hi = 0;
  for (std::int32_t i = 0; i < n; ++i) {
    const float s = score(i);
    if (s != s) return false;
    const std::uint32_t k = order_key(s);
    lo = k < lo ? k : lo;
    hi = k > hi ? k : hi;
  }
  std::int64_t need = budget; // tokens left for the candidates, the units with lo <= key <= hi
  for (;;) {
    int shift = 0; // bin = (key - lo) >> shift < bins
    while (((hi - lo) >> shift) >= std::uint32_t(bins)) ++shift;
    std::int64_t sum[bins];
    std::int32_t count[bins];
    for (int b = 0; b < bins; ++b) sum[b] = 0, count[b] = 0;
    for (std::int32_t i = 0; i < n; ++i) {
      const std::uint32_t k = order_key(score(i));
      if (k < lo || k > hi) continue;
      const std::int64_t w = weight(i);
      if (w <= 0) continue;
      const int b = int((k - lo) >> shift);
      sum[b] += w;
      ++count[b];
    }
    int top = bins - 1; // the bin where the budget runs out, from the highest scores down
    std::int64_t above = 0;
    for (; top >= 0 && above + sum[top] < need; --top) above += sum[top];
    if (top < 0) { // only at the first level: later ranges hold the rest of the budget
      cut.all = true;
      return true;
    }
    need -= above;
    const std::uint32_t blo = lo + (std::uint32_t(top) << shift);
    const std::uint32_t bhi = shift == 0 ? blo : blo + ((std::uint32_t(1) << shift) - 1);
    auto in_top = [&](std::int32_t i, std::uint32_t k) {
      return k >= blo && k <= (bhi < hi ? bhi : hi) && weight(i) > 0;
    };
    if (count[top] <= cap || shift == 0) { // rank the units of the crossing bin and walk them to the cut
      int m = 0;
      std::int64_t acc = 0, total = 0;
      for (std::int32_t i = 0; i < n; ++i) {
        const float s = score(i);
        if (!in_top(i, order_key(s))) continue;
        if (shift == 0) { // one key, one score: the units rank by index, and this is index order
          const std::int64_t w = weight(i);
          if (acc + w >= need) {
            cut = cut_point{s, i, need - acc, false};
            return true;
          }
          acc += w;
          continue;
        }
        scratch_score[m] = s;
        scratch_id[m++] = i;
        total += weight(i);
      }
      if (total < need) return false; // cannot happen: the bin's weights reach `need`
      select_cut(scratch_score, scratch_id, m, weight, need, cut);
      return true;
    }
    std::uint32_t nlo = 0xffffffffu, nhi = 0; // the crossing bin's exact key range becomes the candidates'
    for (std::int32_t i = 0; i < n; ++i) {
      const std::uint32_t k = order_key(score(i));
      if (!in_top(i, k)) continue;
      nlo = k < nlo ? k : nlo;
      nhi = k > nhi ? k : nhi;
    }
    lo = nlo;
    hi = nhi;
  }
}

//! In-place ascending heap sort of int32 keys (device-safe, no allocation).
SKV_HOST_DEVICE inline void sort_ascending(std::int32_t* a, int n) {
  auto sift = [a](int c, int m) {
    for (;;) {
      int w = c;
      const int l = 2 * c + 1, r = l + 1;
      if (l < m && a[l] > a[w]) w = l;
      if (r < m && a[r] > a[w]) w = r;
      if (w == c) return;
      const std::int32_t t = a[c];
      a[c] = a[w];
      a[w] = t;
      c = w;
    }
  };
  for (int i = n / 2 - 1; i >= 0; --i) sift(i, n);
  for (int m = n; m > 1; --m) {
    const std::int32_t t = a[0];
    a[0] = a[m - 1];
    a[m - 1] = t;
    sift(0, m - 1);
  }
}

//! The rank-then-take rule itself: units in rank order until their weights reach `budget`, the last one cut to its
//! first tokens; `emit(unit, take)` is then called for the taken units in increasing unit order. Returns the tokens
//! taken. Scratch `heap_score` / `heap_id` hold `budget + 1` entries.
//! With `whole`, no unit is cut: one that does not fit is skipped and the budget left is filled with the best-ranked
//! units below it that fit (greedy, in rank order), so every taken unit is taken whole. A NaN score ranks as -inf.
//! `known_floor` (not with `whole`): the caller knows that every unit scoring below it ranks below the cut.
template <class Score, class Weight, class Emit>
SKV_HOST_DEVICE std::int64_t take_top_units(std::int32_t n, Score score, Weight weight, std::int64_t budget,
                                            float* heap_score, std::int32_t* heap_id, Emit emit, bool whole = false,
                                            float known_floor = -INFINITY) {
  if (budget <= 0) return 0;
  cut_point cut;
  const int cap = budget_scratch(budget);
  if (!whole &&
      ((known_floor > -INFINITY && floor_cut(n, score, weight, budget, cap, known_floor, heap_score, heap_id, cut)) ||
       budget_cut(n, score, weight, budget, cap, heap_score, heap_id, cut))) {
    std::int64_t total = 0; // one pass in index order: the units ranked above the cut, and the cut unit's part
    const float floor = cut.all ? -INFINITY : cut.score;
    for (std::int32_t i = next_not_below(score, 0, n, floor); i < n; i = next_not_below(score, i + 1, n, floor)) {
      const float s = score(i);
      if (!cut.all && !(s > cut.score || (s == cut.score && i <= cut.id))) continue;
      const std::int64_t w = weight(i);
      if (w <= 0) continue;
      const std::int64_t take = i == cut.id ? cut.take : w;
      emit(i, take);
      total += take;
    }
    return total;
  }
  // The heap path (the `whole` rule, NaN scores): NaN ranks as -inf, so that the ranking stays a total order and
  // the taken tokens never pass the budget, whatever the scores.
  auto ranked = [&score](std::int32_t i) {
    const float v = score(i);
    return v == v ? v : -INFINITY;
  };
  int h = budget_topk(n, ranked, weight, budget, heap_score, heap_id);
  std::int64_t taken = 0;
  for (int i = 0; i + 1 < h; ++i) taken += weight(heap_id[i]);
  std::int32_t cut_id = h > 0 ? heap_id[h - 1] : -1;
  std::int64_t cut_take = budget - taken;
  if (whole && cut_id >= 0 && cut_take < weight(cut_id)) {
    // Every unit ranked above the cut one is kept; fill what is left from the units ranked below it.
    --h;
    std::int64_t left = cut_take;
    float last_s = ranked(cut_id);
    std::int32_t last = cut_id;
    while (left > 0) {
      std::int32_t best = -1;
      float best_s = 0.f;
      for (std::int32_t i = 0; i < n; ++i) {
        const float s = ranked(i);
        if (!ranks_below(s, i, last_s, last) || (best >= 0 && !ranks_below(best_s, best, s, i))) continue;
        const std::int64_t w = weight(i);
        if (w <= 0 || w > left) continue;
        best = i;
        best_s = s;
      }
      if (best < 0) break;
      heap_id[h++] = best;
      left -= weight(best);
      last = best;
      last_s = best_s;
    }
    cut_id = -1;
  }
  sort_ascending(heap_id, h);
  std::int64_t total = 0;
  for (int j = 0; j < h; ++j) {
    std::int64_t take = weight(heap_id[j]);
    if (heap_id[j] == cut_id && cut_take < take) take = cut_take;
    emit(heap_id[j], take);
    total += take;
  }
  return total;
}

} // namespace detail
SKV_NAMESPACE_END
