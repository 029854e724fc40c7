//! Deliberately naive references for every preset of SKV_PRESETS, with one interface (`ref::preset_model`), for the
//! fuzzer (tests/fuzz/fuzz_cache.cpp). Written from the methods' rules as the headers and tests/baselines_test.cpp
//! state them: plain loops, double precision, one (sequence, KV head) pair at a time, nothing shared with the
//! library but the option values and `skv::pyramid_capacity` (the official PyramidKV formula, checked against the
//! paper's numbers in baselines_test.cpp).
//!
//! Every preset is a composition, and so is the reference:
//! - segmenter: every token / fixed chunks / sentences (boundary ids, max_length, min_length);
//! - retention: keep all / sink + recent (StreamingLLM) / observation-window top units (SnapKV, PyramidKV per-layer
//!   capacities, ChunkKV segments and layer reuse, SentenceKV's pre-filter) / heavy hitters (H2O);
//! - choice: attend to everything retained / top segments by their summary (mean key: SentenceKV; min/max bounds:
//!   Quest), with sink, recent window, fallback, dense layers, the blended ranking query and the whole-segments
//!   rule — checked against `ref::sentence_model` too.
//!
//! Float vs double. The cache ranks with float scores, the reference with double ones, so two units whose scores
//! differ by less than the float error could legitimately come out in either order. Every ranking here is a
//! "budgeted take" over units with a score, an error bound `tol` and (optionally) a tie class. When no two units
//! that straddle the cut are within the error bound the expected result is exact; otherwise it is `ambiguous`, and
//! `check_take` verifies the cache's actual choice against the rule's properties instead (whole units taken in rank
//! order, at most one cut to its first tokens, nothing ranked clearly lower taken over something clearly higher,
//! the exact token count; with whole segments: none cut, within the budget, none left out that fit in what the
//! units ranked above it left). Where a choice changes later state (what a prefill kept, which token H2O evicted),
//! the reference adopts the cache's choice once it has verified it.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "sentence_reference.hpp"

namespace ref {

// ---- the budgeted take -------------------------------------------------------------------------------------------

//! One ranked unit: a token, a segment (its eligible tokens, in order) or an eviction candidate.
struct unit {
  double score = 0;                 //!< the exact (double) score
  double tol = 0;                   //!< bound of |float score - score| in the cache; 0: the float score is exact
  std::int64_t tie = -1;            //!< >= 0: units with equal scores and equal classes are equal in float too
  std::vector<std::int32_t> tokens; //!< what taking the unit gives; a cut unit gives a prefix
};

//! Whether float rounding could order `a` and `b` differently from their exact scores (ties break by index).
inline bool near_tie(const unit& a, const unit& b) {
  if (a.score == b.score) {
    if (a.tie >= 0 && a.tie == b.tie) return false;
    return a.tol > 0 || b.tol > 0;
  }
  return std::abs(a.score - b.score) <= a.tol + b.tol;
}

//! Units (with tokens) best first: higher score, then lower index.
inline std::vector<int> rank_order(const std::vector<unit>& u) {
  std::vector<int> order;
  for (std::size_t i = 0; i < u.size(); ++i)
    if (!u[i].tokens.empty()) order.push_back(int(i));
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return u[a].score > u[b].score; });
  return order;
}

struct take_result {
  std::vector<std::int32_t> tokens; //!< increasing
  bool ambiguous = false;           //!< a near tie straddles the cut: another outcome is as valid
};

//! Units in rank order until `budget` tokens are taken, the last one cut to its first tokens.
inline take_result take_units(const std::vector<unit>& u, std::int64_t budget) {
  take_result r;
  const auto order = rank_order(u);
  std::int64_t left = budget, total = 0;
  int last = -1;
  for (int i : order) total += std::int64_t(u[i].tokens.size());
  for (std::size_t i = 0; i < order.size() && left > 0; ++i) {
    const auto& t = u[order[i]].tokens;
    const std::int64_t take = std::min<std::int64_t>(left, std::int64_t(t.size()));
    r.tokens.insert(r.tokens.end(), t.begin(), t.begin() + take);
    left -= take;
    last = int(i);
  }
  // only the order of a pair that straddles the last taken unit changes the outcome
  if (total > budget && last >= 0)
    for (int i = 0; i <= last && !r.ambiguous; ++i)
      for (std::size_t j = std::size_t(last); j < order.size(); ++j)
        if (int(j) != i && near_tie(u[order[i]], u[order[j]])) {
          r.ambiguous = true;
          break;
        }
  std::sort(r.tokens.begin(), r.tokens.end());
  return r;
}

//! The chosen positions grouped by unit: idx[i] = their indices in u[i].tokens (in the order chosen); `error` names
//! the first chosen position that is in no unit.
struct chosen_by_unit {
  std::vector<std::vector<int>> idx;
  std::string error;
};
inline chosen_by_unit group_by_unit(const std::vector<unit>& u, const std::vector<std::int32_t>& chosen) {
  std::map<std::int32_t, std::pair<int, int>> where; // token -> (unit, index in the unit)
  for (std::size_t i = 0; i < u.size(); ++i)
    for (std::size_t j = 0; j < u[i].tokens.size(); ++j) where[u[i].tokens[j]] = {int(i), int(j)};
  chosen_by_unit g{std::vector<std::vector<int>>(u.size()), ""};
  for (auto t : chosen) {
    const auto it = where.find(t);
    if (it == where.end()) return {{}, "position " + std::to_string(t) + " is not a candidate"};
    g.idx[it->second.first].push_back(it->second.second);
  }
  return g;
}

//! "" when `chosen` is a valid outcome of taking `budget` tokens from `u` up to float rounding; else why not.
inline std::string check_take(const std::vector<unit>& u, std::int64_t budget,
                              const std::vector<std::int32_t>& chosen) {
  auto [idx, error] = group_by_unit(u, chosen);
  if (!error.empty()) return error;
  std::int64_t total = 0;
  for (const auto& x : u) total += std::int64_t(x.tokens.size());
  std::vector<std::int64_t> taken(u.size(), 0);
  std::int64_t sum = 0;
  int partial = 0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    std::sort(idx[i].begin(), idx[i].end());
    for (std::size_t j = 0; j < idx[i].size(); ++j)
      if (idx[i][j] != int(j))
        return "unit " + std::to_string(i) + " (first position " + std::to_string(u[i].tokens[0]) +
               ") is not taken as a prefix of its tokens";
    taken[i] = std::int64_t(idx[i].size());
    sum += taken[i];
    partial += taken[i] > 0 && taken[i] < std::int64_t(u[i].tokens.size());
  }
  const std::int64_t want = std::max<std::int64_t>(0, std::min(budget, total));
  if (sum != want) return std::to_string(sum) + " tokens taken, the rule takes " + std::to_string(want);
  if (partial > 1) return std::to_string(partial) + " units cut (at most one may be)";
  for (std::size_t a = 0; a < u.size(); ++a) {
    if (taken[a] == 0) continue;
    for (std::size_t b = 0; b < u.size(); ++b) {
      if (a == b || u[b].tokens.empty() || taken[b] == std::int64_t(u[b].tokens.size())) continue;
      const bool lower = u[a].score < u[b].score || (u[a].score == u[b].score && a > b);
      if (lower && !near_tie(u[a], u[b])) {
        std::ostringstream os;
        os.precision(17);
        os << "unit " << a << " (first position " << u[a].tokens[0] << ", score " << u[a].score
           << ") is taken over unit " << b << " (first position " << u[b].tokens[0] << ", score " << u[b].score
           << ") which ranks clearly higher";
        return os.str();
      }
    }
  }
  return "";
}

//! segment_topk's `whole_segments` rule: units in rank order, each taken whole if it fits in what is left of
//! `budget` and skipped otherwise (lower-ranked units that fit still may be taken). Any near tie among the units
//! makes the outcome ambiguous (a swap changes what is left for every later unit).
inline take_result take_units_whole(const std::vector<unit>& u, std::int64_t budget) {
  take_result r;
  const auto order = rank_order(u);
  std::int64_t left = budget;
  for (int i : order) {
    const auto& t = u[i].tokens;
    if (left <= 0) break;
    if (std::int64_t(t.size()) > left) continue;
    r.tokens.insert(r.tokens.end(), t.begin(), t.end());
    left -= std::int64_t(t.size());
  }
  for (std::size_t i = 0; i < order.size() && !r.ambiguous; ++i)
    for (std::size_t j = i + 1; j < order.size() && !r.ambiguous; ++j)
      r.ambiguous = near_tie(u[order[i]], u[order[j]]);
  std::sort(r.tokens.begin(), r.tokens.end());
  return r;
}

//! "" when `chosen` is a valid outcome of `take_units_whole` up to float rounding; else why not. Properties: every
//! unit taken whole or not at all, at most `budget` tokens, and a unit left out did not fit in what the units that
//! may rank above it (clearly higher, or within the rounding) left of the budget.
inline std::string check_take_whole(const std::vector<unit>& u, std::int64_t budget,
                                    const std::vector<std::int32_t>& chosen) {
  const auto [idx, error] = group_by_unit(u, chosen);
  if (!error.empty()) return error;
  std::vector<std::int64_t> taken(u.size(), 0);
  std::int64_t sum = 0;
  for (std::size_t i = 0; i < u.size(); ++i) {
    taken[i] = std::int64_t(idx[i].size());
    if (taken[i] != 0 && taken[i] != std::int64_t(u[i].tokens.size()))
      return "unit " + std::to_string(i) + " (first position " + std::to_string(u[i].tokens[0]) + ") is cut";
    sum += taken[i];
  }
  if (sum > budget) return std::to_string(sum) + " tokens taken, over the budget " + std::to_string(budget);
  for (std::size_t b = 0; b < u.size(); ++b) {
    if (u[b].tokens.empty() || taken[b] != 0) continue;
    std::int64_t above = 0; // tokens of the taken units that may rank above b
    for (std::size_t a = 0; a < u.size(); ++a)
      if (taken[a] != 0 && (u[a].score > u[b].score || (u[a].score == u[b].score && a < b) || near_tie(u[a], u[b])))
        above += taken[a];
    if (std::int64_t(u[b].tokens.size()) <= budget - above)
      return "unit " + std::to_string(b) + " (first position " + std::to_string(u[b].tokens[0]) + ", " +
             std::to_string(u[b].tokens.size()) + " tokens) fits in what the units ranked above it left (" +
             std::to_string(budget - above) + ") but is not taken";
  }
  return "";
}

// ---- configuration -----------------------------------------------------------------------------------------------

enum class segmenter_kind { token, fixed, sentence };
enum class summary_kind { none, mean, minmax };
enum class retention_kind { keep_all, sink_recent, window_top, heavy_hitters };
enum class choice_kind { attend_all, segment_topk };

//! Everything a preset's behaviour depends on, read from a cache's options.
struct preset_config {
  int layers = 1, q_heads = 1, kv_heads = 1, dim = 64;
  float softmax_scale = 0.f; //!< the option as given
  double scale = 0.125;      //!< the effective scale (the cache's float value)
  segmenter_kind seg = segmenter_kind::token;
  int fixed_size = 16;
  std::vector<std::int32_t> boundaries;
  int max_length = 0, min_length = 0;
  summary_kind sum = summary_kind::none;
  retention_kind ret = retention_kind::keep_all;
  choice_kind choice = choice_kind::attend_all;
  int budget = 1024;
  int sr_sink = 4; // keep_sink_recent
  // keep_window_top
  float factor = 1.f;
  int window = 32, kernel = 7, beta = 0, reuse_depth = 1;
  bool segment_units = false;
  std::vector<int> head_budgets;
  // keep_heavy_hitters
  float recent_ratio = 0.5f;
  int hh_window = 32;
  // segment_topk
  int sink = 0, recent = 0, threshold = 1, dense_layers = 0;
  bool fallback = false, mean_query = true;
  bool blend = false; //!< query_mode::blend: unit mean query + unit current query (overrides mean_query)
  bool whole = false; //!< whole_segments: a segment that does not fit is skipped, not cut
  //! K/V/Q are multiples of 1/8 in [-4, 4] stored as float: min/max page scores with the current query are then
  //! computed exactly in float (products and their sums are representable), so their ties are exact.
  bool exact_inputs = false;

  int group() const { return q_heads / kv_heads; }
  //! segment_topk's recent window: the newest retained token (the step's own) is always attended
  int recent_kept() const { return std::max(recent, 1); }
  std::int64_t hh_recent() const { return std::int64_t(float(budget) * recent_ratio); }
  std::int64_t kept(int head) const {
    const int b = head_budgets.empty() ? budget : head_budgets[head];
    return std::int64_t(factor * float(b));
  }
  std::int64_t capacity(int layer, int head) const {
    return skv::pyramid_capacity(layer, layers, kept(head), window, beta);
  }
  bool reuses(int layer) const { return reuse_depth > 1 && layer % reuse_depth != 0; }
  bool feeds_next(int layer) const { return reuse_depth > 1 && (layer + 1) % reuse_depth != 0 && layer + 1 < layers; }
  //! Prompt queries read at prefill (0: none).
  int prefill_window() const {
    return ret == retention_kind::window_top ? window : ret == retention_kind::heavy_hitters ? hh_window : 0;
  }
  bool closes(std::int32_t id, std::int64_t len) const {
    switch (seg) {
    case segmenter_kind::token:
      return true;
    case segmenter_kind::fixed:
      return len >= fixed_size;
    default:
      if (max_length > 0 && len >= max_length) return true;
      return std::find(boundaries.begin(), boundaries.end(), id) != boundaries.end() && len >= min_length;
    }
  }
  std::string describe() const {
    std::ostringstream os;
    os << "shape{layers " << layers << ", q_heads " << q_heads << ", kv_heads " << kv_heads << ", dim " << dim
       << "} scale " << scale << " (option " << softmax_scale << ") segmenter ";
    if (seg == segmenter_kind::token) os << "token";
    if (seg == segmenter_kind::fixed) os << "fixed(" << fixed_size << ")";
    if (seg == segmenter_kind::sentence) {
      os << "sentence(ids";
      for (auto b : boundaries) os << ' ' << b;
      os << ", max " << max_length << ", min " << min_length << ")";
    }
    os << " summary "
       << (sum == summary_kind::none   ? "none"
           : sum == summary_kind::mean ? "mean"
                                       : "minmax")
       << " budget " << budget << " retention ";
    switch (ret) {
    case retention_kind::keep_all:
      os << "keep_all";
      break;
    case retention_kind::sink_recent:
      os << "sink_recent(sink " << sr_sink << ")";
      break;
    case retention_kind::window_top:
      os << "window_top(factor " << factor << ", window " << window << ", kernel " << kernel << ", "
         << (segment_units ? "segments" : "tokens") << ", beta " << beta << ", reuse " << reuse_depth
         << ", head_budgets";
      for (auto b : head_budgets) os << ' ' << b;
      os << ")";
      break;
    case retention_kind::heavy_hitters:
      os << "heavy_hitters(recent_ratio " << recent_ratio << " -> " << hh_recent() << ", window " << hh_window << ")";
      break;
    }
    os << " choice ";
    if (choice == choice_kind::attend_all)
      os << "attend_all";
    else
      os << "segment_topk(sink " << sink << ", recent " << recent << ", fallback " << fallback << ", threshold "
         << threshold << ", " << (blend ? "blend" : mean_query ? "partial_mean" : "current") << ", dense_layers "
         << dense_layers << (whole ? ", whole_segments" : "") << ")";
    return os.str();
  }
};

//! The reference configuration of cache type `Cache` with options `o`.
template <class Cache>
preset_config config_of(const skv::model_shape& shape, const typename Cache::options& o, bool exact_inputs) {
  using Seg = typename Cache::segmenter_type;
  using Sum = typename Cache::summarizer_type;
  using Sel = typename Cache::selector_type;
  preset_config c;
  c.layers = shape.num_layers;
  c.q_heads = shape.num_q_heads;
  c.kv_heads = shape.num_kv_heads;
  c.dim = shape.head_dim;
  c.softmax_scale = o.softmax_scale;
  c.scale = o.softmax_scale > 0.f ? double(o.softmax_scale)
                                  : double(1.f / std::sqrt(float(shape.head_dim > 0 ? shape.head_dim : 1)));
  c.exact_inputs = exact_inputs;
  if constexpr (std::is_same_v<Seg, skv::token_segmenter>) {
    c.seg = segmenter_kind::token;
  } else if constexpr (requires { o.segmenter.size; }) {
    c.seg = segmenter_kind::fixed;
    c.fixed_size = o.segmenter.size;
  } else {
    c.seg = segmenter_kind::sentence;
    c.boundaries = o.segmenter.boundaries;
    c.max_length = o.segmenter.max_length;
    c.min_length = o.segmenter.min_length;
  }
  if constexpr (std::is_same_v<Sum, skv::mean_key_summarizer>) c.sum = summary_kind::mean;
  if constexpr (std::is_same_v<Sum, skv::minmax_key_summarizer>) c.sum = summary_kind::minmax;
  const auto& s = o.selector;
  c.budget = s.budget;
  if constexpr (requires { s.retention.sink; }) {
    c.ret = retention_kind::sink_recent;
    c.sr_sink = s.retention.sink;
  } else if constexpr (requires { s.retention.factor; }) {
    c.ret = retention_kind::window_top;
    c.factor = s.retention.factor;
    c.window = s.retention.window;
    c.kernel = s.retention.kernel;
    c.segment_units = s.retention.unit == skv::granularity::segment;
    c.beta = s.retention.pyramid_beta;
    c.reuse_depth = s.retention.reuse_depth;
    c.head_budgets = s.retention.head_budgets;
  } else if constexpr (requires { s.retention.recent_ratio; }) {
    c.ret = retention_kind::heavy_hitters;
    c.recent_ratio = s.retention.recent_ratio;
    c.hh_window = s.retention.window;
  } else {
    static_assert(std::is_same_v<typename Sel::retention_type, skv::keep_all>, "unknown retention");
    c.ret = retention_kind::keep_all;
  }
  if constexpr (requires { s.choice.sink; }) {
    c.choice = choice_kind::segment_topk;
    c.sink = s.choice.sink;
    c.recent = s.choice.recent;
    c.fallback = s.choice.fallback;
    c.threshold = s.choice.length_threshold;
    c.mean_query = s.choice.query == skv::query_mode::partial_mean;
    c.blend = s.choice.query == skv::query_mode::blend;
    c.whole = s.choice.whole_segments;
    c.dense_layers = s.choice.dense_layers;
  } else {
    c.choice = choice_kind::attend_all;
  }
  return c;
}

//! "" when a cache with this configuration can be built; else the documented requirement it breaks.
inline std::string invalid_reason(const preset_config& c) {
  if (c.layers < 1) return "num_layers < 1";
  if (c.kv_heads < 1) return "num_kv_heads < 1";
  if (c.q_heads < 1 || c.q_heads % c.kv_heads != 0) return "num_q_heads not a positive multiple of num_kv_heads";
  if (c.dim != 64 && c.dim != 96 && c.dim != 128 && c.dim != 256) return "head_dim not 64, 96, 128 or 256";
  if (!(c.softmax_scale >= 0.f) || !std::isfinite(c.softmax_scale)) return "softmax_scale not finite and >= 0";
  if (c.seg == segmenter_kind::fixed && c.fixed_size < 1) return "fixed size < 1";
  if (c.seg == segmenter_kind::sentence) {
    if (c.boundaries.empty() && c.max_length <= 0) return "no boundaries and no max_length";
    if (c.max_length < 0) return "max_length < 0";
    if (c.min_length < 0) return "min_length < 0";
    if (c.max_length != 0 && c.min_length > c.max_length) return "min_length > max_length";
    for (auto b : c.boundaries)
      if (b < 0) return "negative boundary id";
  }
  if (c.budget < 1) return "budget < 1";
  switch (c.ret) {
  case retention_kind::keep_all:
    break;
  case retention_kind::sink_recent:
    if (c.sr_sink < 0) return "sink < 0";
    if (c.budget <= c.sr_sink) return "budget <= sink";
    break;
  case retention_kind::window_top:
    if (c.window < 1 || c.window > 128) return "window outside [1, 128]";
    if (c.kernel < 1 || c.kernel % 2 == 0) return "kernel not odd >= 1";
    if (!(c.factor >= 1.f)) return "factor < 1";
    if (c.beta < 0) return "pyramid_beta < 0";
    if (c.reuse_depth < 1) return "reuse_depth < 1";
    if (!c.head_budgets.empty() && int(c.head_budgets.size()) != c.kv_heads) return "head_budgets.size() != kv_heads";
    for (int h = 0; h < c.kv_heads; ++h) {
      if (c.kept(h) <= c.window) return "factor * budget <= window";
      if (c.capacity(c.layers - 1, h) <= c.window) return "last layer's pyramid capacity <= window";
    }
    break;
  case retention_kind::heavy_hitters:
    if (c.hh_window < 1 || c.hh_window > 128) return "window outside [1, 128]";
    if (!(c.recent_ratio > 0.f && c.recent_ratio < 1.f)) return "recent_ratio outside (0, 1)";
    if (c.hh_recent() < 1 || c.budget - c.hh_recent() < 1) return "budget leaves no heavy hitter or no recent token";
    break;
  }
  if (c.choice == choice_kind::segment_topk) {
    if (c.sink < 0) return "sink < 0";
    if (c.recent < 0) return "recent < 0";
    if (c.budget <= c.sink + c.recent_kept()) return "budget <= sink + max(recent, 1)";
    if (c.threshold < 0) return "length_threshold < 0";
    if (c.dense_layers < 0) return "dense_layers < 0";
  }
  return "";
}

// ---- scores -----------------------------------------------------------------------------------------------------

//! Error bound of a window score (a float sum of softmax weights: polynomial_exp's ~2 ulp, the denominators' and the
//! accumulation's rounding). Measured against ref::window_scores over random multiples of 1/8 (n <= 420, windows up
//! to 128, groups of 4, head_dim 64/128, scales 0.03..0.5): at most 1.7e-6 relative; 2e-5 leaves a factor 12. The
//! absolute floor covers weights that float flushes to zero (below e^-87) and double keeps.
inline double window_tol(double x) { return x == 0 ? 0 : 2e-5 * std::abs(x) + 1e-12; }
//! Error bound of H2O's accumulated attention: window score seed plus one float addition of a softmax weight per
//! decode step (hundreds of roundings in the worst case), hence looser.
inline double weight_tol(double x) { return x == 0 ? 0 : 1e-4 * std::abs(x) + 1e-12; }

//! Window scores of every prompt position of (seq, KV head) (SnapKV's observation window: the softmax attention each
//! position receives from the last `window` prompt queries of the KV group, summed; causal inside the window), with
//! tolerances and tie classes. Two positions get bitwise equal float scores when every window query computes the
//! same float logit for both: when their keys are bitwise equal, or, if the logits are exact in float
//! (`exact_logits`: inputs multiples of 1/8 in [-4, 4] and a power-of-two scale), when their exact logits are.
inline std::vector<unit> window_units(const history& h, int seq, int kh, const std::vector<float>& qrows, int q_heads,
                                      int window, double scale, bool exact_logits) {
  const std::int64_t n = std::int64_t(h.ids[seq].size()), w = std::min<std::int64_t>(window, n);
  const int dim = h.dim, G = q_heads / h.kv_heads;
  std::vector<double> score(n, 0.0);
  std::vector<std::vector<double>> seen(exact_logits ? n : 0); // the logits each position received
  for (std::int64_t i = 0; i < w; ++i) {
    const std::int64_t t = n - w + i;
    for (int g = 0; g < G; ++g) {
      const float* q = &qrows[(t * q_heads + kh * G + g) * dim];
      std::vector<double> logit(t + 1);
      double m = -INFINITY, l = 0;
      for (std::int64_t j = 0; j <= t; ++j) {
        const float* k = h.key(seq, j, kh);
        double dot = 0;
        for (int d = 0; d < dim; ++d) dot += double(q[d]) * k[d];
        logit[j] = dot * scale;
        m = std::max(m, logit[j]);
      }
      for (auto x : logit) l += std::exp(x - m);
      for (std::int64_t j = 0; j <= t; ++j) {
        score[j] += std::exp(logit[j] - m) / l;
        if (exact_logits) seen[j].push_back(logit[j]);
      }
    }
  }
  std::map<std::vector<float>, std::int64_t> key_id;
  std::map<std::vector<double>, std::int64_t> logits_id;
  std::vector<unit> u(n);
  for (std::int64_t j = 0; j < n; ++j) {
    u[j].score = score[j];
    u[j].tol = window_tol(score[j]);
    if (exact_logits) {
      u[j].tie = logits_id.emplace(seen[j], std::int64_t(logits_id.size())).first->second;
    } else {
      const float* k = h.key(seq, j, kh);
      const auto id = key_id.emplace(std::vector<float>(k, k + dim), std::int64_t(key_id.size())).first->second;
      u[j].tie = id * (n + 1) + (j <= n - w ? 0 : j - (n - w)); // same key, seen by the same window queries
    }
    u[j].tokens = {std::int32_t(j)};
  }
  return u;
}

//! SnapKV's max pool (stride 1, padding kernel / 2) over positions [0, limit). A pooled value is its window's
//! maximum. In float it is the largest of the window's candidates, the raw scores that float could rank at the top
//! (the maximum and those in a near tie with it); every other one is clearly below. So two pooled values whose
//! candidates have the same raw tie classes (the same float values) are equal in float: one pooled tie class.
inline std::vector<unit> pooled_units(const std::vector<unit>& raw, std::int64_t limit, int kernel) {
  std::vector<unit> out(limit);
  std::map<std::vector<std::int64_t>, std::int64_t> class_of;
  for (std::int64_t j = 0; j < limit; ++j) {
    const std::int64_t lo = std::max<std::int64_t>(0, j - kernel / 2), hi = std::min(limit - 1, j + kernel / 2);
    std::int64_t m = lo;
    for (std::int64_t t = lo; t <= hi; ++t)
      if (raw[t].score > raw[m].score) m = t;
    std::vector<std::int64_t> candidates;
    bool classed = true;
    double tol = 0; // float picks a candidate c: d_m - tol_m <= float <= d_c + tol_c <= d_m + tol_c
    for (std::int64_t t = lo; t <= hi; ++t)
      if (t == m || raw[t].score == raw[m].score || near_tie(raw[t], raw[m])) {
        candidates.push_back(raw[t].tie);
        classed &= raw[t].tie >= 0;
        tol = std::max(tol, raw[t].tol);
      }
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    out[j].score = raw[m].score;
    out[j].tol = tol;
    out[j].tie = classed ? class_of.emplace(candidates, std::int64_t(class_of.size())).first->second : -1;
    out[j].tokens = {std::int32_t(j)};
  }
  return out;
}

//! First positions of the segments of a prompt (the open run at its end counts as closed, as at prefill).
inline std::vector<std::int32_t> prompt_segments(const preset_config& c, const std::vector<std::int32_t>& ids) {
  std::vector<std::int32_t> begins;
  std::int64_t open = 0;
  for (std::size_t t = 0; t < ids.size(); ++t) {
    if (open == 0) begins.push_back(std::int32_t(t));
    ++open;
    if (c.closes(ids[t], open)) open = 0;
  }
  return begins;
}

// ---- the model -------------------------------------------------------------------------------------------------

//! How often each kind of check ran (the fuzzer prints them with SKV_FUZZ_STATS=1): evidence that a run reached
//! evictions, cuts and near ties rather than only the easy cases.
struct model_stats {
  long pairs_exact = 0;       //!< (layer, pair) selections compared exactly
  long pairs_cut = 0;         //!< ... of them non-dense segment_topk selections (segments ranked and cut)
  long pairs_near_tie = 0;    //!< segment rankings with a near tie at the cut, checked by properties
  long pairs_blend = 0;       //!< ranked segment selections (exact or near tie) with query_mode::blend
  long pairs_whole = 0;       //!< ... with whole_segments
  long pairs_unknown = 0;     //!< selections checked by properties while a prefill choice was still open
  long prefill_cut = 0;       //!< prefills that ranked and dropped prompt tokens (window_top, heavy hitters)
  long prefill_near_tie = 0;  //!< ... with a near tie at the cut
  long prefill_resolved = 0;  //!< near-tie prefills whose actual choice was verified and adopted
  long prefill_reused = 0;    //!< layers that reused the previous layer's kept positions (ChunkKV)
  long evictions = 0;         //!< sink_recent / heavy hitter evictions during decode
  long eviction_near_tie = 0; //!< heavy hitter evictions with a near tie, verified and adopted
};
inline model_stats stats;

//! What one (layer, pair) kept of its prompt; shared by the layers that reuse it (ChunkKV).
struct prefill_record {
  std::vector<std::int32_t> kept; //!< prompt positions (the reference's choice; exact unless `pending`)
  bool pending = false;           //!< ambiguous: the cache may have made another valid choice, not yet seen
  std::vector<unit> units;        //!< the take it came from (when pending)
  std::int64_t k = 0;
  std::vector<std::int32_t> tail; //!< always kept
  std::vector<double> seed;       //!< H2O: the window score of every prompt position

  std::string check(const std::vector<std::int32_t>& observed) const {
    std::vector<std::int32_t> rest;
    for (auto t : tail)
      if (!std::binary_search(observed.begin(), observed.end(), t))
        return "protected prompt position " + std::to_string(t) + " was not kept";
    for (auto t : observed)
      if (!std::binary_search(tail.begin(), tail.end(), t)) rest.push_back(t);
    return check_take(units, k, rest);
  }
};

struct pair_model {
  std::shared_ptr<prefill_record> rec;
  std::vector<std::int32_t> kept;     //!< sink_recent / heavy_hitters: every retained position
  std::map<std::int32_t, double> acc; //!< heavy_hitters: accumulated attention by position
  bool evict_pending = false;         //!< heavy_hitters: the last eviction was a near tie
  std::vector<unit> evict_units;
  std::vector<std::int32_t> before_evict;
};

struct seq_model {
  std::vector<std::int32_t> seg_begin;
  std::int64_t partial_begin = 0, n = 0, n_prompt = 0;
  sentence_model sm; //!< segment_topk: the open segment's queries and the selection rule
};

struct layer_model {
  bool prefilled = false;
  int batch = 0;
  history hist;
  std::vector<seq_model> seqs;
  std::vector<pair_model> pairs;
  std::vector<float> last_q; //!< [batch, q_heads, dim] the latest decode queries
  // ChunkKV's reuse: what this layer hands to the next one
  bool saved_valid = false;
  std::vector<std::int32_t> saved_len;
  std::vector<std::int32_t> saved_ids; // the prompts it was kept for (reuse needs the same ones)
  std::vector<std::shared_ptr<prefill_record>> saved;
};

//! One cache's worth of reference: every layer, every sequence, every KV head.
class preset_model {
public:
  explicit preset_model(preset_config c) : c_(std::move(c)) { reset(); }
  const preset_config& config() const { return c_; }

  void reset() {
    layers_.assign(c_.layers, layer_model{});
    for (auto& L : layers_) L.hist = history{c_.kv_heads, c_.dim, {}, {}, {}};
    last_prefilled_ = -1;
  }
  bool prefilled(int l) const { return layers_[l].prefilled; }
  int batch(int l) const { return layers_[l].batch; }
  const history& hist(int l) const { return layers_[l].hist; }
  std::int64_t length(int l, int s) const { return layers_[l].seqs[s].n; }
  std::int64_t prompt_length(int l, int s) const { return layers_[l].seqs[s].n_prompt; }
  const std::vector<std::int32_t>& segment_begins(int l, int s) const { return layers_[l].seqs[s].seg_begin; }

  //! Retained positions of pair `p` of layer `l` (the reference's guess while a prefill choice is pending).
  std::vector<std::int32_t> retained(int l, int p) const {
    const layer_model& L = layers_[l];
    const seq_model& q = L.seqs[p / c_.kv_heads];
    switch (c_.ret) {
    case retention_kind::keep_all:
      return iota(std::int32_t(q.n));
    case retention_kind::window_top: {
      auto r = L.pairs[p].rec->kept;
      for (std::int64_t t = q.n_prompt; t < q.n; ++t) r.push_back(std::int32_t(t));
      return r;
    }
    default:
      return L.pairs[p].kept;
    }
  }

  //! Prefill of layer `l` with the prompts `b` (float, NHD).
  void prefill(int l, const ::ref::batch& b) {
    layer_model& L = layers_[l];
    const int B = int(b.indptr.size()) - 1, H = c_.kv_heads;
    L.prefilled = true;
    L.batch = B;
    L.hist = history{H, c_.dim, {}, {}, {}};
    L.hist.add_prompt(b);
    L.seqs.assign(B, seq_model{});
    L.pairs.assign(std::size_t(B) * H, pair_model{});
    L.last_q.clear();
    std::vector<std::int32_t> lens(B);
    std::vector<std::vector<float>> qrows(B);
    for (int s = 0; s < B; ++s) {
      seq_model& q = L.seqs[s];
      lens[s] = b.indptr[s + 1] - b.indptr[s];
      q.n = q.n_prompt = q.partial_begin = lens[s];
      q.seg_begin = prompt_segments(c_, L.hist.ids[s]);
      qrows[s] = prompt_queries(b, s);
      if (c_.choice == choice_kind::segment_topk) {
        q.sm = sentence_model{sentence_options_of(), c_.q_heads, H, c_.dim, c_.scale, {}, 0, 0, {}, {}, 0, false, {}};
        q.sm.prefill(L.hist, s, qrows[s]); // segmentation and the query state; retention comes from below
      }
    }
    // ChunkKV's reuse of the previous layer's kept positions (only when it was prefilled just before)
    bool reused = false;
    if (c_.ret == retention_kind::window_top && l > 0 && last_prefilled_ == l - 1) {
      layer_model& prev = layers_[l - 1];
      const bool same = c_.reuses(l) && prev.saved_valid && prev.saved_len == lens && prev.saved_ids == b.ids;
      if (same) {
        for (int p = 0; p < B * H; ++p) L.pairs[p].rec = prev.saved[p];
        reused = true;
        ++stats.prefill_reused;
        if (c_.feeds_next(l)) {
          L.saved = prev.saved;
          L.saved_len = prev.saved_len;
          L.saved_ids = prev.saved_ids;
          L.saved_valid = true;
        }
      }
      prev.saved_valid = false;
      prev.saved.clear();
    }
    if (!reused) {
      for (int s = 0; s < B; ++s)
        for (int h = 0; h < H; ++h) L.pairs[std::size_t(s) * H + h] = prefill_pair(l, L, s, h, qrows[s]);
      if (c_.ret == retention_kind::window_top && c_.feeds_next(l)) {
        L.saved.clear();
        for (auto& pm : L.pairs) L.saved.push_back(pm.rec);
        L.saved_len = lens;
        L.saved_ids = b.ids;
        L.saved_valid = true;
      }
    }
    last_prefilled_ = l;
  }

  //! One decoded token per sequence joins layer `l` (K/V retained, query into the open segment, evictions).
  void append(int l, const step& st) {
    layer_model& L = layers_[l];
    const int H = c_.kv_heads, QD = c_.q_heads * c_.dim;
    L.hist.add_step(st);
    L.last_q = st.q;
    for (int s = 0; s < L.batch; ++s) {
      seq_model& q = L.seqs[s];
      const std::int32_t id = st.ids[s];
      if (c_.closes(id, q.n + 1 - q.partial_begin)) {
        q.seg_begin.push_back(std::int32_t(q.partial_begin));
        q.partial_begin = q.n + 1;
      }
      ++q.n;
      if (c_.choice == choice_kind::segment_topk) q.sm.append(id, &st.q[std::size_t(s) * QD]);
      for (int h = 0; h < H; ++h) {
        pair_model& pm = L.pairs[std::size_t(s) * H + h];
        const std::int32_t pos = std::int32_t(q.n - 1);
        if (c_.ret == retention_kind::sink_recent) {
          pm.kept.push_back(pos); // a token is evicted as soon as it leaves the window: the oldest after the sinks
          if (std::int64_t(pm.kept.size()) > c_.budget) {
            pm.kept.erase(pm.kept.begin() + c_.sr_sink);
            ++stats.evictions;
          }
        } else if (c_.ret == retention_kind::heavy_hitters) {
          pm.kept.push_back(pos);
          pm.acc[pos] = 0.0;
          pm.evict_pending = false;
          if (std::int64_t(pm.kept.size()) > c_.budget && !pm.rec->pending) {
            auto units = eviction_units(pm.kept, pm.acc);
            const auto t = take_units(units, std::int64_t(pm.kept.size()) - c_.budget);
            ++stats.evictions;
            if (t.ambiguous) {
              pm.evict_pending = true;
              pm.evict_units = units;
              pm.before_evict = pm.kept;
            }
            // A near tie leaves the victim open until the cache's selection shows it (check_pair): the scores of
            // all candidates stay until then, since the cache may validly have evicted another tied token.
            for (auto e : t.tokens) {
              pm.kept.erase(std::find(pm.kept.begin(), pm.kept.end(), e));
              if (!t.ambiguous) pm.acc.erase(e);
            }
          }
        }
      }
    }
  }

  //! H2O learns from a step's attention: each retained token's softmax weight, summed over the KV group's query
  //! heads, is added to its score (after `check_selection` resolved what is retained).
  void observe(int l) {
    layer_model& L = layers_[l];
    if (c_.ret != retention_kind::heavy_hitters) return;
    const int H = c_.kv_heads, G = c_.group(), D = c_.dim;
    for (int p = 0; p < L.batch * H; ++p) {
      pair_model& pm = L.pairs[p];
      const int s = p / H, h = p % H;
      for (int g = 0; g < G; ++g) {
        const float* qh = &L.last_q[(std::size_t(s) * c_.q_heads + h * G + g) * D];
        std::vector<double> logit;
        double m = -INFINITY, sum = 0;
        for (auto t : pm.kept) {
          double dot = 0;
          for (int d = 0; d < D; ++d) dot += double(qh[d]) * L.hist.key(s, t, h)[d];
          logit.push_back(dot * c_.scale);
          m = std::max(m, logit.back());
        }
        for (auto x : logit) sum += std::exp(x - m);
        for (std::size_t i = 0; i < pm.kept.size(); ++i) pm.acc[pm.kept[i]] += std::exp(logit[i] - m) / sum;
      }
    }
  }

  //! Checks the cache's current selection of layer `l` (CSR over pairs) against the rule; "" when it holds. Adopts
  //! the cache's choice where a near tie left it open and the choice is valid.
  std::string check_selection(int l, const skv::selection_csr& got) {
    layer_model& L = layers_[l];
    const int H = c_.kv_heads;
    for (int p = 0; p < L.batch * H; ++p) {
      const std::vector<std::int32_t> S(got.indices.begin() + got.indptr[p], got.indices.begin() + got.indptr[p + 1]);
      std::string why = check_pair(l, L, p, S);
      if (!why.empty()) {
        std::ostringstream os;
        os << "layer " << l << ", sequence " << p / H << ", KV head " << p % H << " (length " << L.seqs[p / H].n
           << ", prompt " << L.seqs[p / H].n_prompt << "): " << why << "\n  selected: " << list(S);
        return os.str();
      }
    }
    return "";
  }

  static std::string list(const std::vector<std::int32_t>& v) {
    std::ostringstream os;
    os << "[" << v.size() << "]";
    for (std::size_t i = 0; i < v.size(); ++i) {
      // runs a..b compress the long ones
      std::size_t j = i;
      while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
      os << ' ' << v[i];
      if (j > i) os << ".." << v[j];
      i = j;
    }
    return os.str();
  }

private:
  sentence_options sentence_options_of() const {
    sentence_options o;
    o.boundaries = std::set<std::int32_t>(c_.boundaries.begin(), c_.boundaries.end());
    o.max_length = c_.max_length;
    o.min_length = c_.min_length;
    o.fixed = c_.seg == segmenter_kind::fixed ? c_.fixed_size : c_.seg == segmenter_kind::token ? 1 : 0;
    o.budget = c_.budget;
    o.sink = c_.sink;
    o.recent = c_.recent;
    o.prefilter = false;
    o.fallback = c_.fallback;
    o.threshold = c_.threshold;
    o.mean_query = c_.mean_query;
    o.blend = c_.blend;
    o.whole = c_.whole;
    o.minmax = c_.sum == summary_kind::minmax;
    return o;
  }

  //! Whether float computes the window logits exactly (power-of-two scale, exact inputs).
  bool exact_logits() const {
    int e = 0;
    return c_.exact_inputs && std::frexp(c_.scale, &e) == 0.5;
  }

  //! The retention's prefill rule for one pair.
  pair_model prefill_pair(int l, const layer_model& L, int s, int h, const std::vector<float>& qrows) const {
    pair_model pm;
    pm.rec = std::make_shared<prefill_record>();
    prefill_record& r = *pm.rec;
    const std::int64_t n = std::int64_t(L.hist.ids[s].size());
    switch (c_.ret) {
    case retention_kind::keep_all:
      r.kept = iota(std::int32_t(n));
      break;
    case retention_kind::sink_recent: {
      const std::int64_t head = std::min<std::int64_t>(c_.sr_sink, n), recent = c_.budget - c_.sr_sink;
      for (std::int64_t t = 0; t < n; ++t)
        if (t < head || t >= n - recent) r.kept.push_back(std::int32_t(t));
      pm.kept = r.kept;
      break;
    }
    case retention_kind::window_top: {
      const std::int64_t cap = c_.capacity(l, h);
      if (n <= cap) {
        r.kept = iota(std::int32_t(n));
        break;
      }
      const std::int64_t limit = std::max<std::int64_t>(0, n - c_.window); // the window itself is kept
      const auto raw = window_units(L.hist, s, h, qrows, c_.q_heads, c_.window, c_.scale, exact_logits());
      auto score =
          c_.kernel > 1 ? pooled_units(raw, limit, c_.kernel) : std::vector<unit>(raw.begin(), raw.begin() + limit);
      if (c_.segment_units) { // whole segments by summed score, the last one cut
        const auto begins = L.seqs[s].seg_begin;
        std::vector<unit> seg(begins.size());
        for (std::size_t i = 0; i < begins.size(); ++i) {
          const std::int64_t end = i + 1 < begins.size() ? begins[i + 1] : n, hi = std::min(end, limit);
          for (std::int64_t t = begins[i]; t < hi; ++t) {
            seg[i].score += score[t].score;
            seg[i].tol += score[t].tol;
            seg[i].tokens.push_back(std::int32_t(t));
          }
        }
        score = seg;
      }
      r.units = score;
      r.k = cap - (n - limit);
      for (std::int64_t t = limit; t < n; ++t) r.tail.push_back(std::int32_t(t));
      const auto t = take_units(r.units, r.k);
      r.kept = t.tokens;
      r.kept.insert(r.kept.end(), r.tail.begin(), r.tail.end());
      r.pending = t.ambiguous;
      ++stats.prefill_cut;
      stats.prefill_near_tie += r.pending;
      if (!r.pending) r.units.clear();
      break;
    }
    case retention_kind::heavy_hitters: {
      const std::int64_t recent = c_.hh_recent(), limit = std::max<std::int64_t>(0, n - recent);
      const auto raw = window_units(L.hist, s, h, qrows, c_.q_heads, c_.hh_window, c_.scale, exact_logits());
      for (const auto& x : raw) r.seed.push_back(x.score);
      if (n <= c_.budget) {
        r.kept = iota(std::int32_t(n));
      } else {
        r.units.assign(raw.begin(), raw.begin() + limit);
        r.k = c_.budget - recent;
        for (std::int64_t t = limit; t < n; ++t) r.tail.push_back(std::int32_t(t));
        const auto t = take_units(r.units, r.k);
        r.kept = t.tokens;
        r.kept.insert(r.kept.end(), r.tail.begin(), r.tail.end());
        r.pending = t.ambiguous;
        ++stats.prefill_cut;
        stats.prefill_near_tie += r.pending;
      }
      pm.kept = r.kept;
      for (auto t : r.kept) pm.acc[t] = r.seed[t];
      break;
    }
    }
    return pm;
  }

  //! H2O's eviction candidates: all but the `recent` newest retained tokens, the lowest score first (ties: older).
  std::vector<unit> eviction_units(const std::vector<std::int32_t>& kept,
                                   const std::map<std::int32_t, double>& acc) const {
    const std::int64_t candidates = std::max<std::int64_t>(0, std::int64_t(kept.size()) - c_.hh_recent());
    std::vector<unit> u(candidates);
    for (std::int64_t i = 0; i < candidates; ++i) {
      const double a = acc.at(kept[i]);
      u[i].score = -a;
      u[i].tol = weight_tol(a);
      u[i].tokens = {kept[i]};
    }
    return u;
  }

  std::string check_pair(int l, layer_model& L, int p, const std::vector<std::int32_t>& S) {
    const int H = c_.kv_heads, s = p / H, h = p % H;
    seq_model& q = L.seqs[s];
    pair_model& pm = L.pairs[p];
    for (std::size_t i = 0; i < S.size(); ++i)
      if (S[i] < 0 || S[i] >= q.n || (i > 0 && S[i] <= S[i - 1]))
        return "the selection is not increasing positions in [0, length)";
    const auto r = retained(l, p);
    if (c_.choice == choice_kind::attend_all || dense(l, q, std::int64_t(r.size()))) {
      if (pm.rec->pending) return resolve(L, p, S);
      if (c_.ret == retention_kind::heavy_hitters && pm.evict_pending) {
        // the cache evicted another candidate of a near tie: which one must be a valid choice
        std::vector<std::int32_t> gone;
        for (auto t : pm.before_evict)
          if (!std::binary_search(S.begin(), S.end(), t)) gone.push_back(t);
        for (auto t : S)
          if (!std::binary_search(pm.before_evict.begin(), pm.before_evict.end(), t))
            return "selected position " + std::to_string(t) + " was not retained";
        const std::int64_t drop = std::int64_t(pm.before_evict.size()) - c_.budget;
        std::string why = check_take(pm.evict_units, drop, gone);
        if (!why.empty()) return "H2O eviction (near tie): " + why;
        for (auto t : gone) pm.acc.erase(t);
        for (auto t : S) // the model's own invariant: every retained token has its accumulated score
          if (!pm.acc.count(t)) return "reference model: no H2O score for retained position " + std::to_string(t);
        pm.kept = S;
        pm.evict_pending = false;
        ++stats.eviction_near_tie;
        return "";
      }
      if (S != r) return "expected everything retained " + list(r);
      ++stats.pairs_exact;
      return "";
    }
    // segment_topk, not dense
    const std::int64_t len = std::int64_t(r.size());
    if (len > c_.budget && std::int64_t(S.size()) > c_.budget) return "more than the budget selected";
    if (pm.rec->pending) { // what the prefill kept is still open: properties only
      ++stats.pairs_unknown;
      const std::int64_t head = std::min<std::int64_t>(c_.sink, len),
                         tail = std::min<std::int64_t>(c_.recent_kept(), len - head);
      for (std::int64_t k = len - tail; k < len; ++k)
        if (r[k] >= q.n_prompt && !std::binary_search(S.begin(), S.end(), r[k]))
          return "recent position " + std::to_string(r[k]) + " not selected";
      for (auto t : S) {
        if (t >= q.n_prompt || std::binary_search(pm.rec->tail.begin(), pm.rec->tail.end(), t)) continue;
        bool candidate = false;
        for (const auto& u : pm.rec->units)
          candidate |= std::find(u.tokens.begin(), u.tokens.end(), t) != u.tokens.end();
        if (!candidate) return "prompt position " + std::to_string(t) + " can not have been retained";
      }
      return "";
    }
    std::vector<std::int32_t> fixed;
    const auto units = segment_units(L, s, h, r, fixed);
    const std::int64_t left = c_.budget - c_.sink - c_.recent_kept();
    const auto t = c_.whole ? take_units_whole(units, left) : take_units(units, left);
    stats.pairs_blend += c_.blend;
    stats.pairs_whole += c_.whole;
    if (!t.ambiguous) {
      std::vector<std::int32_t> want = fixed;
      want.insert(want.end(), t.tokens.begin(), t.tokens.end());
      std::sort(want.begin(), want.end());
      // self-check: the existing naive SentenceKV/Quest reference agrees
      q.sm.retained.assign(H, {});
      q.sm.retained[h] = r;
      const auto sm_want = q.sm.select(L.hist, s, h, &L.last_q[std::size_t(s) * c_.q_heads * c_.dim]);
      if (sm_want != want)
        return "REFERENCE SELF-CHECK: ref::sentence_model selects " + list(sm_want) + " but the unit rule " +
               list(want);
      if (S != want) return "expected " + list(want);
      ++stats.pairs_exact;
      ++stats.pairs_cut;
      return "";
    }
    std::vector<std::int32_t> rest;
    for (auto x : fixed)
      if (!std::binary_search(S.begin(), S.end(), x))
        return "sink/recent position " + std::to_string(x) + " not selected";
    for (auto x : S)
      if (!std::binary_search(fixed.begin(), fixed.end(), x)) rest.push_back(x);
    std::string why = c_.whole ? check_take_whole(units, left, rest) : check_take(units, left, rest);
    ++stats.pairs_near_tie;
    return why.empty() ? "" : "segment ranking (near tie): " + why;
  }

  bool dense(int l, const seq_model& q, std::int64_t len) const {
    if (c_.choice == choice_kind::attend_all) return true;
    return l < c_.dense_layers || (c_.fallback && q.sm.partial_queries <= c_.threshold) || len <= c_.budget;
  }

  //! A selection that shows everything retained, while the prefill's choice was a near tie: verify and adopt it.
  std::string resolve(layer_model& L, int p, const std::vector<std::int32_t>& S) {
    pair_model& pm = L.pairs[p];
    prefill_record& rec = *pm.rec;
    const seq_model& q = L.seqs[p / c_.kv_heads];
    std::vector<std::int32_t> prompt, decoded;
    for (auto t : S) (t < q.n_prompt ? prompt : decoded).push_back(t);
    if (c_.ret == retention_kind::heavy_hitters) {
      // first look after the prefill: one token appended, maybe one evicted (from the kept set, by its seeds)
      if (decoded != iota(std::int32_t(q.n - q.n_prompt), std::int32_t(q.n_prompt)) || q.n - q.n_prompt != 1)
        return "H2O: expected the decoded token " + std::to_string(q.n - 1) + " retained";
      const std::int64_t kept_n = std::min<std::int64_t>(q.n_prompt, c_.budget);
      bool ok = false;
      std::string why;
      if (kept_n + 1 <= c_.budget) {
        why = rec.check(prompt);
        ok = why.empty();
      } else {
        for (std::int32_t e = 0; e < q.n_prompt && !ok; ++e) {
          if (std::binary_search(prompt.begin(), prompt.end(), e)) continue;
          auto K = prompt;
          K.insert(std::upper_bound(K.begin(), K.end(), e), e);
          if (!rec.check(K).empty()) continue;
          auto all = K;
          all.push_back(std::int32_t(q.n - 1));
          std::map<std::int32_t, double> acc;
          for (auto t : K) acc[t] = rec.seed[t];
          acc[std::int32_t(q.n - 1)] = 0.0;
          ok = check_take(eviction_units(all, acc), 1, {e}).empty();
        }
        if (!ok) why = "no prompt token's eviction explains it";
      }
      if (!ok) return "H2O prefill (near tie) then eviction: " + why;
      pm.kept = S;
      pm.acc.clear();
      for (auto t : prompt) pm.acc[t] = rec.seed[t];
      pm.acc[std::int32_t(q.n - 1)] = 0.0;
      rec.kept = prompt;
      rec.pending = false;
      ++stats.prefill_resolved;
      return "";
    }
    if (decoded != iota(std::int32_t(q.n - q.n_prompt), std::int32_t(q.n_prompt)))
      return "every decoded token must be retained";
    std::string why = rec.check(prompt);
    if (!why.empty()) return "prefill kept set (near tie): " + why;
    rec.kept = prompt;
    rec.pending = false;
    ++stats.prefill_resolved;
    return "";
  }

  //! segment_topk's units for pair (s, h) over its retained positions `r`; `fixed` gets the sink and recent ones.
  std::vector<unit> segment_units(const layer_model& L, int s, int h, const std::vector<std::int32_t>& r,
                                  std::vector<std::int32_t>& fixed) const {
    const seq_model& q = L.seqs[s];
    const sentence_model& sm = q.sm;
    const int G = c_.group(), D = c_.dim;
    const std::int64_t len = std::int64_t(r.size());
    const std::int64_t head = std::min<std::int64_t>(c_.sink, len),
                       tail = std::min<std::int64_t>(c_.recent_kept(), len - head);
    for (std::int64_t k = 0; k < head; ++k) fixed.push_back(r[k]);
    for (std::int64_t k = len - tail; k < len; ++k) fixed.push_back(r[k]);
    const std::vector<double> qbar = sm.ranking_query(h, &L.last_q[std::size_t(s) * c_.q_heads * D]);
    const bool exact = c_.sum == summary_kind::minmax && !c_.mean_query && !c_.blend && c_.exact_inputs;
    std::vector<unit> units(q.seg_begin.size());
    for (std::size_t i = 0; i < q.seg_begin.size(); ++i) {
      const std::int64_t lo = q.seg_begin[i], hi = i + 1 < q.seg_begin.size() ? q.seg_begin[i + 1] : q.partial_begin;
      std::vector<std::int64_t> members; // ranks of the retained tokens in [lo, hi)
      for (std::int64_t k = 0; k < len; ++k)
        if (r[k] >= lo && r[k] < hi) members.push_back(k);
      if (members.empty()) continue;
      double score = 0, mag = 0;
      for (int d = 0; d < D; ++d) {
        double mean = 0, mn = INFINITY, mx = -INFINITY;
        for (auto k : members) {
          const double x = L.hist.key(s, r[k], h)[d];
          mean += x;
          mn = std::min(mn, x);
          mx = std::max(mx, x);
        }
        mean /= double(members.size());
        for (int g = 0; g < G; ++g) {
          const double qd = qbar[std::size_t(g) * D + d];
          if (c_.sum == summary_kind::minmax) {
            score += std::max(qd * mn, qd * mx);
            mag += std::max(std::abs(qd * mn), std::abs(qd * mx));
          } else {
            score += qd * mean;
            mag += std::abs(qd * mean);
          }
        }
      }
      units[i].score = score;
      // float: the mean (one division), the ranking query (a division, or blend's two norms and square roots; the
      // group's sum), a 16-lane dot product
      units[i].tol = exact ? 0.0 : 2e-5 * mag + 1e-30;
      for (auto k : members)
        if (k >= head && k < len - tail) units[i].tokens.push_back(r[k]);
    }
    std::sort(fixed.begin(), fixed.end());
    return units;
  }

  preset_config c_;
  std::vector<layer_model> layers_;
  int last_prefilled_ = -1;
};

} // namespace ref
