//! The SentenceKV test driver shared by the tests of the built-in presets and of user-written policies: runs a
//! cache and the naive reference (sentence_reference.hpp) side by side and checks every step.
#pragma once

#include <sstream>
#include <utility>

#include "sentence_reference.hpp"

namespace sentence_harness {

inline constexpr std::int32_t boundary = 1, vocab = 50;

//! Token ids with a sentence boundary about every `mean_len` tokens.
inline std::vector<std::int32_t> text_ids(std::int64_t n, int mean_len, std::mt19937& rng) {
  std::vector<std::int32_t> ids(n);
  std::uniform_int_distribution<int> tok(2, vocab - 1), coin(0, mean_len - 1);
  for (auto& t : ids) t = coin(rng) == 0 ? boundary : tok(rng);
  return ids;
}

struct scenario {
  std::vector<int> lengths{700, 260};
  int q_heads = 8, kv_heads = 2, dim = 64;
  int layers = 1; //!< layers, each fed the same K/V
  int steps = 40;
  int mean_len = 12;
  std::uint32_t seed = 1;
};

//! The reference's options from a composed selector's (the retention decides whether the pre-filter runs).
inline ref::sentence_options reference_options(const auto& sel, const auto& seg) {
  ref::sentence_options o;
  o.boundaries = {boundary};
  o.max_length = seg.max_length;
  o.min_length = seg.min_length;
  o.budget = sel.budget;
  o.sink = sel.choice.sink;
  o.recent = sel.choice.recent;
  o.prefilter = requires { sel.retention.factor; };
  if constexpr (requires { sel.retention.factor; }) {
    o.retention = sel.retention.factor;
    o.window = sel.retention.window;
    o.kernel = sel.retention.kernel;
  }
  o.fallback = sel.choice.fallback;
  o.threshold = sel.choice.length_threshold;
  o.mean_query = sel.choice.query == skv::query_mode::partial_mean;
  o.blend = sel.choice.query == skv::query_mode::blend;
  o.whole = sel.choice.whole_segments;
  if constexpr (requires { sel.choice.heavy; }) {
    o.heavy = sel.choice.heavy;
    o.heavy_window = sel.choice.heavy_window;
  }
  if constexpr (requires { sel.choice.warmup; }) o.warmup = sel.choice.warmup;
  return o;
}

//! Runs `Cache` and the reference side by side; checks retained sets, selections and attention every step, in every
//! layer of `sc.layers` (each fed the same K/V; a layer's reference budget is its share of `decode_pyramid_beta`'s
//! pyramid). Returns every selection seen (for determinism checks).
template <class Cache>
std::vector<std::int32_t> run_against_reference(typename Cache::options opts, const scenario& sc, bool exact_selection,
                                                ref::sentence_options ro) {
  std::mt19937 rng(sc.seed);
  auto b = ref::make_batch(sc.lengths, sc.q_heads, sc.kv_heads, sc.dim, sc.seed + 100);
  b.ids = text_ids(b.rows(), sc.mean_len, rng);
  const int L = sc.layers;
  Cache cache({L, sc.q_heads, sc.kv_heads, sc.dim}, opts);
  using T = typename Cache::value_type;
  // the reference sees exactly the values the cache stores (rounded to T); only accumulation differs
  auto round = [](std::vector<float>& x) {
    for (auto& e : x) e = skv::to_float(skv::from_float<T>(e));
  };
  round(b.k);
  round(b.v);
  round(b.q);
  ref::typed_batch<T> tb(b);
  for (int l = 0; l < L; ++l) cache.prefill(l, tb.args());
  ref::history hist{sc.kv_heads, sc.dim, {}, {}, {}};
  hist.add_prompt(b);
  const int B = int(sc.lengths.size());
  std::vector<std::vector<ref::sentence_model>> models(L); // [layer][sequence]
  for (int l = 0; l < L; ++l) {
    ref::sentence_options rl = ro;
    if constexpr (requires { opts.selector.choice.pyramid_beta; }) {
      const auto& c = opts.selector.choice;
      rl.layer_budget = int(skv::pyramid_capacity(l, L, ro.budget, c.sink + std::max(c.recent, 1) + c.heavy,
                                                  c.pyramid_beta));
    }
    for (int s = 0; s < B; ++s) {
      models[l].push_back(
          {rl, sc.q_heads, sc.kv_heads, sc.dim, cache.softmax_scale(), {}, 0, 0, {}, {}, 0, false, {}});
      std::vector<float> qrows(b.q.begin() + std::size_t(b.indptr[s]) * sc.q_heads * sc.dim,
                               b.q.begin() + std::size_t(b.indptr[s + 1]) * sc.q_heads * sc.dim);
      models[l].back().prefill(hist, s, qrows);
      CHECK(cache.segment_begins(l, s) == models[l].back().seg_begin);
      for (int h = 0; h < sc.kv_heads; ++h)
        CHECK(cache.retained(l, s, h) == std::int64_t(models[l].back().retained[h].size()));
    }
  }
  // cross-layer guidance: the guide layer's latest published shares, per sequence (none until it ranks)
  int guided_layers = 0, guide_layer = 0;
  if constexpr (requires { opts.selector.choice.guided_layers; }) { // -1: the first half, by layer 2 * layers / 3
    guided_layers = opts.selector.choice.guided_layers == -1 ? L / 2 : opts.selector.choice.guided_layers;
    guide_layer = opts.selector.choice.guide_layer == -1 ? 2 * L / 3 : opts.selector.choice.guide_layer;
  }
  std::vector<std::vector<double>> guide(B);
  bool published = false;
  std::vector<std::int32_t> trace;
  std::uniform_int_distribution<int> tok(2, vocab - 1), coin(0, 5);
  for (int step = 0; step < sc.steps; ++step) {
    auto st = ref::make_step(B, sc.q_heads, sc.kv_heads, sc.dim, rng);
    for (auto& id : st.ids) id = coin(rng) == 0 ? boundary : tok(rng);
    round(st.k);
    round(st.v);
    round(st.q);
    hist.add_step(st);
    ref::typed_step<T> ts(st);
    std::vector<float> q(st.q.size());
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = skv::to_float(ts.q[i]);
    for (int l = 0; l < L; ++l) {
      CAPTURE(l);
      const std::int64_t budget = models[l][0].o.decode_budget();
      std::vector<float> out(st.q.size());
      cache.step(l, ts.args(), ref::out_view(out, sc.q_heads, sc.dim));
      const auto sel = cache.selection(l);
      for (int s = 0; s < B; ++s) {
        models[l][s].append(st.ids[s], &q[std::size_t(s) * sc.q_heads * sc.dim]);
        models[l][s].guided = published && l < guided_layers && l != guide_layer;
        if (models[l][s].guided) models[l][s].guide = guide[std::size_t(s)];
      }
      // the guide layer publishes at every step, fallback steps included
      if (guided_layers > 0 && l == guide_layer) {
        for (int s = 0; s < B; ++s)
          guide[std::size_t(s)] = models[l][s].guide_mass(hist, s, &q[std::size_t(s) * sc.q_heads * sc.dim]);
        published = true;
      }
      for (int s = 0; s < B; ++s) {
        for (int h = 0; h < sc.kv_heads; ++h) {
          const int p = s * sc.kv_heads + h;
          std::vector<std::int32_t> got(sel.indices.begin() + sel.indptr[p],
                                        sel.indices.begin() + sel.indptr[p + 1]);
          const auto& kept = models[l][s].retained[h];
          const bool dense = models[l][s].attends_all();
          // properties: budget, sink and recent, subset of the retained tokens, sorted
          if (!dense) CHECK(std::int64_t(got.size()) <= budget);
          const std::int64_t len = std::int64_t(kept.size());
          for (std::int64_t k = 0; k < std::min<std::int64_t>(ro.sink, len); ++k)
            CHECK(std::binary_search(got.begin(), got.end(), kept[k]));
          for (std::int64_t k = std::max<std::int64_t>(0, len - ro.recent); k < len; ++k)
            CHECK(std::binary_search(got.begin(), got.end(), kept[k]));
          CHECK(std::is_sorted(got.begin(), got.end()));
          for (auto x : got) CHECK(std::binary_search(kept.begin(), kept.end(), x));
          if (exact_selection) {
            const auto want = models[l][s].select(hist, s, h, &q[std::size_t(s) * sc.q_heads * sc.dim]);
            if (got != want) { // say which positions differ before failing
              std::ostringstream diff;
              diff << "step " << step << " layer " << l << " seq " << s << " head " << h << ": got " << got.size()
                   << " want " << want.size() << "; only in got:";
              for (auto x : got)
                if (!std::binary_search(want.begin(), want.end(), x)) diff << ' ' << x;
              diff << "; only in want:";
              for (auto x : want)
                if (!std::binary_search(got.begin(), got.end(), x)) diff << ' ' << x;
              FAIL_CHECK(diff.str());
            }
            REQUIRE(got == want);
          }
          trace.insert(trace.end(), got.begin(), got.end());
          trace.push_back(-1);
        }
      }
      const auto want = ref::attend_all(hist, q, sc.q_heads, sel, cache.softmax_scale());
      CHECK(ref::rel_l2(out, want) < (std::is_same_v<T, float> ? 1e-5 : 1e-2));
    }
  }
  return trace;
}

template <class Cache>
typename Cache::options small_options() {
  typename Cache::options o;
  o.segmenter.boundaries = {boundary};
  o.selector.budget = 96;
  o.selector.choice.sink = 8;
  o.selector.choice.recent = 8;
  return o;
}

//! Options of two caches to compare selection for selection: `small_options<A>()` and the same segmenter, sinks
//! and recent window for `B`, both with budget `budget`; `B` ranks through its sketch or projection from
//! `sketch_rows` segments per pair.
template <class A, class B>
std::pair<typename A::options, typename B::options> paired_options(int budget, int sketch_rows) {
  auto a = small_options<A>();
  typename B::options b;
  b.segmenter = a.segmenter;
  b.selector.budget = a.selector.budget = budget;
  b.selector.choice.sink = a.selector.choice.sink;
  b.selector.choice.recent = a.selector.choice.recent;
  b.selector.choice.sketch_rows = sketch_rows;
  return {a, b};
}

} // namespace sentence_harness
