// The baselines against naive references written from each paper's rule (tests/sentence_reference.hpp holds the
// shared window scoring), kept sets at prefill, selected sets over decode steps, attention vs the double reference.
#include <doctest/doctest.h>

#include "sentence_reference.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace baselines_test {

namespace {

constexpr int QH = 8, KH = 2, D = 64;

//! A naive method: retained positions per (layer, sequence, KV head), updated per step.
struct naive {
  std::vector<std::vector<std::vector<std::int32_t>>> kept; // [layer][seq * KH + h]
  std::vector<std::vector<std::vector<double>>> acc;        // H2O scores, aligned with kept
};

//! Drives `Cache` and the naive rule side by side over prefill + `steps` decode steps.
//! `prefill_rule(layer, seq, head, hist, qrows) -> kept`, `step_rule(naive&, layer, hist, q)` updates after append.
template <class Cache, class PrefillRule, class StepRule>
void compare(typename Cache::options o, int layers, std::vector<int> lengths, int steps, PrefillRule prefill_rule,
             StepRule step_rule, std::uint32_t seed = 3) {
  auto b = ref::make_batch(lengths, QH, KH, D, seed);
  ref::typed_batch<float> tb(b);
  Cache cache({layers, QH, KH, D}, o);
  ref::history hist{KH, D, {}, {}, {}};
  hist.add_prompt(b);
  const int B = int(lengths.size());
  naive nv;
  nv.kept.resize(layers);
  nv.acc.resize(layers);
  for (int l = 0; l < layers; ++l) {
    cache.prefill(l, tb.args());
    for (int s = 0; s < B; ++s)
      for (int h = 0; h < KH; ++h) {
        auto [keep, acc] = prefill_rule(l, s, h, hist, ref::prompt_queries(b, s), nv);
        CHECK(cache.retained(l, s, h) == std::int64_t(keep.size()));
        nv.kept[l].push_back(keep);
        nv.acc[l].push_back(acc);
      }
  }
  std::mt19937 rng(seed + 7);
  for (int step = 0; step < steps; ++step) {
    const auto st = ref::make_step(B, QH, KH, D, rng);
    hist.add_step(st);
    ref::typed_step<float> ts(st);
    for (int l = 0; l < layers; ++l) {
      std::vector<float> out(st.q.size());
      cache.step(l, ts.args(), ref::out_view(out, QH, D));
      const auto want_sets = step_rule(nv, l, hist, st.q, cache);
      const auto sel = cache.selection(l);
      for (int p = 0; p < B * KH; ++p) {
        std::vector<std::int32_t> got(sel.indices.begin() + sel.indptr[p], sel.indices.begin() + sel.indptr[p + 1]);
        REQUIRE(got == want_sets[p]);
      }
      const auto want = ref::attend_all(hist, st.q, QH, sel, cache.softmax_scale());
      CHECK(ref::rel_l2(out, want) < 1e-5);
    }
  }
}

//! SnapKV / PyramidKV / ChunkKV keep rule at prefill.
std::vector<std::int32_t> window_keep(const ref::history& hist, int s, int h, const std::vector<float>& qrows,
                                      std::int64_t cap, int kernel, int chunk, double scale) {
  const std::int64_t n = std::int64_t(hist.ids[s].size());
  if (n <= cap) return ref::iota(std::int32_t(n));
  const std::int64_t w = std::min<std::int64_t>(32, n), limit = n - w;
  const auto raw = ref::window_scores(hist, s, h, qrows, QH, w, scale);
  std::vector<std::int32_t> keep;
  if (chunk <= 1) {
    keep = ref::top_k(ref::max_pool(raw, limit, kernel), cap - w);
  } else { // chunks ranked by summed score, whole chunks in rank order, the last one cut
    std::vector<double> cs;
    for (std::int64_t c0 = 0; c0 < limit; c0 += chunk) {
      double sum = 0;
      for (std::int64_t t = c0; t < std::min(limit, c0 + chunk); ++t) sum += raw[t];
      cs.push_back(sum);
    }
    std::vector<std::int32_t> order(cs.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return cs[a] > cs[b]; });
    std::int64_t left = cap - w;
    for (int c : order)
      for (std::int64_t t = std::int64_t(c) * chunk; t < std::min(limit, std::int64_t(c + 1) * chunk) && left > 0;
           ++t, --left)
        keep.push_back(std::int32_t(t));
    std::sort(keep.begin(), keep.end());
  }
  for (std::int64_t t = limit; t < n; ++t) keep.push_back(std::int32_t(t));
  return keep;
}

//! Prefill-only methods: decode tokens are appended to the kept set, everything kept is attended.
auto append_all = [](naive& nv, int l, const ref::history& hist, const std::vector<float>&, auto&) {
  for (std::size_t p = 0; p < nv.kept[l].size(); ++p)
    nv.kept[l][p].push_back(std::int32_t(hist.ids[p / KH].size() - 1));
  return nv.kept[l];
};

} // namespace

TEST_CASE("snap_kv keeps SnapKV's top pooled-window tokens + window per KV head") {
  skv::snap_kv<float>::options o;
  o.selector.budget = 160;
  compare<skv::snap_kv<float>>(
      o, 1, {700, 120, 400}, 5,
      [&](int, int s, int h, const ref::history& hist, const std::vector<float>& q, naive&) {
        return std::pair{window_keep(hist, s, h, q, 160, 7, 1, 1 / std::sqrt(64.0)), std::vector<double>{}};
      },
      append_all);
}

TEST_CASE("the window scores use options.softmax_scale, not a hard-coded 1/sqrt(head_dim)") {
  skv::snap_kv<float>::options o;
  o.selector.budget = 160;
  o.softmax_scale = 0.6f; // peakier than 1/8: a different ranking of the same prompt
  const double scale = 0.6;
  int differs = 0;
  compare<skv::snap_kv<float>>(
      o, 1, {700, 400}, 1,
      [&](int, int s, int h, const ref::history& hist, const std::vector<float>& q, naive&) {
        auto keep = window_keep(hist, s, h, q, 160, 7, 1, scale);
        differs += keep != window_keep(hist, s, h, q, 160, 7, 1, 1 / std::sqrt(64.0));
        return std::pair{keep, std::vector<double>{}};
      },
      append_all);
  CHECK(differs > 0); // the scale matters for this prompt, so the match above is about the scale
}

TEST_CASE("pyramid_kv: per-layer budgets from the official formula, SnapKV selection within each") {
  skv::pyramid_kv<float>::options o;
  o.selector.budget = 192;
  const int L = 4;
  // official: min = (192-32)/20 = 8, max = 2*160 - 8 = 312, steps = (312-8)/3 = 101 -> 312, 211, 110, 9 (+ window)
  const std::int64_t caps[L] = {344, 243, 142, 41};
  for (int l = 0; l < L; ++l) CHECK(skv::pyramid_capacity(l, L, 192, 32, 20) == caps[l]);
  compare<skv::pyramid_kv<float>>(
      o, L, {800, 300}, 3,
      [&](int l, int s, int h, const ref::history& hist, const std::vector<float>& q, naive&) {
        return std::pair{window_keep(hist, s, h, q, caps[l], 7, 1, 1 / std::sqrt(64.0)), std::vector<double>{}};
      },
      append_all);
}

TEST_CASE("chunk_kv: whole chunks by summed window attention; adjacent layers share the kept positions") {
  skv::chunk_kv<float>::options o;
  o.selector.budget = 132;
  compare<skv::chunk_kv<float>>(
      o, 3, {650, 90, 333}, 4,
      [&](int l, int s, int h, const ref::history& hist, const std::vector<float>& q, naive& nv) {
        if (l == 1) return std::pair{nv.kept[0][s * KH + h], std::vector<double>{}}; // reuse depth 2
        return std::pair{window_keep(hist, s, h, q, 132, 1, 10, 1 / std::sqrt(64.0)), std::vector<double>{}};
      },
      append_all);
}

TEST_CASE("h2o: seeded heavy hitters + recent window; lowest accumulated attention evicted each step") {
  skv::h2o<float>::options o;
  o.selector.budget = 100; // 50 heavy + 50 recent
  const double scale = 1 / std::sqrt(64.0);
  compare<skv::h2o<float>>(
      o, 1, {400, 130, 60}, 12,
      [&](int, int s, int h, const ref::history& hist, const std::vector<float>& q, naive&) {
        const std::int64_t n = std::int64_t(hist.ids[s].size());
        const auto raw = ref::window_scores(hist, s, h, q, QH, std::min<std::int64_t>(32, n), scale);
        std::vector<std::int32_t> keep;
        if (n <= 100)
          keep = ref::iota(std::int32_t(n));
        else {
          std::vector<double> head(raw.begin(), raw.begin() + (n - 50));
          keep = ref::top_k(head, 50);
          for (std::int64_t t = n - 50; t < n; ++t) keep.push_back(std::int32_t(t));
        }
        std::vector<double> acc;
        for (auto t : keep) acc.push_back(raw[t]);
        return std::pair{keep, acc};
      },
      [&](naive& nv, int l, const ref::history& hist, const std::vector<float>& q, auto&) {
        for (std::size_t p = 0; p < nv.kept[l].size(); ++p) {
          auto& keep = nv.kept[l][p];
          auto& acc = nv.acc[l][p];
          keep.push_back(std::int32_t(hist.ids[p / KH].size() - 1));
          acc.push_back(0.0);
          if (keep.size() > 100) { // evict the lowest score among all but the 50 most recent (older first on ties)
            std::size_t worst = 0;
            for (std::size_t i = 1; i + 50 < keep.size(); ++i)
              if (acc[i] < acc[worst]) worst = i;
            keep.erase(keep.begin() + worst);
            acc.erase(acc.begin() + worst);
          }
          // accumulate this step's attention, summed over the group's query heads
          const int s = int(p / KH), h = int(p % KH), G = QH / KH;
          for (int g = 0; g < G; ++g) {
            const float* qh = &q[(std::size_t(s) * QH + h * G + g) * D];
            std::vector<double> logit;
            double m = -INFINITY, lsum = 0;
            for (auto t : keep) {
              double dot = 0;
              for (int d = 0; d < D; ++d) dot += double(qh[d]) * hist.key(s, t, h)[d];
              logit.push_back(dot * scale);
              m = std::max(m, logit.back());
            }
            for (auto x : logit) lsum += std::exp(x - m);
            for (std::size_t i = 0; i < keep.size(); ++i) acc[i] += std::exp(logit[i] - m) / lsum;
          }
        }
        return nv.kept[l];
      });
}

TEST_CASE("quest: pages of 16 ranked by the min/max bound with the current query; first two layers dense") {
  skv::quest<float>::options o;
  o.selector.budget = 96;
  auto b = ref::make_batch({700, 300}, QH, KH, D, 17);
  ref::typed_batch<float> tb(b);
  skv::quest<float> cache({3, QH, KH, D}, o);
  ref::history hist{KH, D, {}, {}, {}};
  hist.add_prompt(b);
  ref::sentence_options ro;
  ro.fixed = 16;
  ro.minmax = true;
  ro.mean_query = false;
  ro.prefilter = false;
  ro.fallback = false;
  ro.budget = 96;
  ro.sink = 0;
  ro.recent = 16;
  std::vector<ref::sentence_model> models;
  for (int s = 0; s < 2; ++s) {
    models.push_back({ro, QH, KH, D, cache.softmax_scale(), {}, 0, 0, {}, {}, 0, false, {}});
    models.back().prefill(hist, s, ref::prompt_queries(b, s));
  }
  for (int l = 0; l < 3; ++l) cache.prefill(l, tb.args());
  std::mt19937 rng(5);
  for (int step = 0; step < 20; ++step) {
    const auto st = ref::make_step(2, QH, KH, D, rng);
    hist.add_step(st);
    ref::typed_step<float> ts(st);
    for (int s = 0; s < 2; ++s) models[s].append(st.ids[s], &st.q[std::size_t(s) * QH * D]);
    for (int l = 0; l < 3; ++l) {
      std::vector<float> out(st.q.size());
      cache.step(l, ts.args(), ref::out_view(out, QH, D));
      const auto sel = cache.selection(l);
      for (int s = 0; s < 2; ++s)
        for (int h = 0; h < KH; ++h) {
          const int p = s * KH + h;
          std::vector<std::int32_t> got(sel.indices.begin() + sel.indptr[p], sel.indices.begin() + sel.indptr[p + 1]);
          const auto want = l < 2 ? ref::iota(std::int32_t(cache.length(l, s)))
                                  : models[s].select(hist, s, h, &st.q[std::size_t(s) * QH * D]);
          REQUIRE(got == want);
        }
      CHECK(ref::rel_l2(out, ref::attend_all(hist, st.q, QH, sel, cache.softmax_scale())) < 1e-5);
    }
  }
  // Quest keeps everything on the fast tier: nothing was evicted or moved
  CHECK(cache.retained(2, 0, 0) == 720);
  const auto m = cache.ledger();
  CHECK(m.slow_bytes == 0);
  CHECK(m.moved_to_fast == 0);
}

TEST_CASE("per-KV-head budgets free memory for real: the ledger follows the sum of the head budgets") {
  auto b = ref::make_batch({4000}, QH, KH, D, 2);
  ref::typed_batch<float> tb(b);
  auto fast_bytes = [&](std::vector<int> head_budgets) {
    skv::snap_kv<float>::options o;
    o.selector.budget = 512;
    o.selector.retention.head_budgets = head_budgets;
    skv::snap_kv<float> c({1, QH, KH, D}, o);
    c.prefill(0, tb.args());
    CHECK(c.retained(0, 0, 0) == (head_budgets.empty() ? 512 : head_budgets[0]));
    CHECK(c.retained(0, 0, 1) == (head_budgets.empty() ? 512 : head_budgets[1]));
    return c.ledger().fast_bytes;
  };
  const auto uniform = fast_bytes({}), skewed = fast_bytes({896, 128}), small = fast_bytes({128, 128});
  skv::full_kv<float> full({1, QH, KH, D});
  full.prefill(0, tb.args());
  const auto all = full.ledger().fast_bytes;
  CHECK(small * 3 < uniform); // 256 tokens kept instead of 1024: memory follows
  CHECK(skewed > small);      // same total as uniform, different split
  CHECK(skewed < uniform * 11 / 10);
  CHECK(uniform * 3 < all); // and far below keeping all 4000 tokens
}

} // namespace baselines_test
