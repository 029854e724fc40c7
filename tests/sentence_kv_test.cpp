// SentenceKV against the naive reference (tests/sentence_reference.hpp), its properties, slot swaps and bad input.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

#include "sentence_reference.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace sentence_kv_test {

namespace {

constexpr std::int32_t boundary = 1, vocab = 50;

//! Token ids with a sentence boundary about every `mean_len` tokens.
std::vector<std::int32_t> text_ids(std::int64_t n, int mean_len, std::mt19937& rng) {
  std::vector<std::int32_t> ids(n);
  std::uniform_int_distribution<int> tok(2, vocab - 1), coin(0, mean_len - 1);
  for (auto& t : ids) t = coin(rng) == 0 ? boundary : tok(rng);
  return ids;
}

struct scenario {
  std::vector<int> lengths{700, 260};
  int q_heads = 8, kv_heads = 2, dim = 64;
  int steps = 40;
  int mean_len = 12;
  std::uint32_t seed = 1;
};

ref::sentence_options reference_options(const auto& sel, const auto& seg) {
  ref::sentence_options o;
  o.boundaries = {boundary};
  o.max_length = seg.max_length;
  o.min_length = seg.min_length;
  o.budget = sel.budget;
  o.sink = sel.sink;
  o.recent = sel.recent;
  o.prefilter = sel.prefilter;
  o.retention = sel.retention;
  o.window = sel.window.window;
  o.kernel = sel.window.kernel;
  o.fallback = sel.fallback;
  o.threshold = sel.length_threshold;
  o.mean_query = sel.query == skv::query_mode::partial_mean;
  return o;
}

//! Runs `Cache` and the reference side by side; checks retained sets, selections and attention every step.
//! Returns every selection seen (for determinism checks).
template <class Cache>
std::vector<std::int32_t> run_against_reference(typename Cache::options opts, const scenario& sc, bool exact_selection,
                                                ref::sentence_options ro) {
  std::mt19937 rng(sc.seed);
  auto b = ref::make_batch(sc.lengths, sc.q_heads, sc.kv_heads, sc.dim, sc.seed + 100);
  b.ids = text_ids(b.rows(), sc.mean_len, rng);
  Cache cache({1, sc.q_heads, sc.kv_heads, sc.dim}, opts);
  using T = typename Cache::value_type;
  // the reference sees exactly the values the cache stores (rounded to T); only accumulation differs
  auto round = [](std::vector<float>& x) {
    for (auto& e : x) e = skv::to_float(skv::from_float<T>(e));
  };
  round(b.k);
  round(b.v);
  round(b.q);
  ref::typed_batch<T> tb(b);
  cache.prefill(0, tb.args());
  ref::history hist{sc.kv_heads, sc.dim, {}, {}, {}};
  hist.add_prompt(b);
  const int B = int(sc.lengths.size());
  std::vector<ref::sentence_model> models;
  for (int s = 0; s < B; ++s) {
    models.push_back({ro, sc.q_heads, sc.kv_heads, sc.dim, cache.softmax_scale(), {}, 0, 0, {}, {}, 0, false});
    std::vector<float> qrows(b.q.begin() + std::size_t(b.indptr[s]) * sc.q_heads * sc.dim,
                             b.q.begin() + std::size_t(b.indptr[s + 1]) * sc.q_heads * sc.dim);
    models.back().prefill(hist, s, qrows);
    CHECK(cache.segment_begins(0, s) == models.back().seg_begin);
    for (int h = 0; h < sc.kv_heads; ++h)
      CHECK(cache.retained(0, s, h) == std::int64_t(models.back().retained[h].size()));
  }
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
    std::vector<float> out(st.q.size());
    cache.step(0, ts.args(), skv::nhd(out.data(), sc.q_heads, sc.dim));
    const auto sel = cache.selection(0);
    for (int s = 0; s < B; ++s) {
      models[s].append(st.ids[s], &q[std::size_t(s) * sc.q_heads * sc.dim]);
      for (int h = 0; h < sc.kv_heads; ++h) {
        const int p = s * sc.kv_heads + h;
        std::vector<std::int32_t> got(sel.indices.begin() + sel.indptr[p], sel.indices.begin() + sel.indptr[p + 1]);
        const auto& kept = models[s].retained[h];
        const bool dense = ro.fallback && models[s].partial_queries <= ro.threshold;
        // properties: budget, sink and recent, subset of the retained tokens, sorted
        if (!dense) CHECK(std::int64_t(got.size()) <= ro.budget);
        const std::int64_t len = std::int64_t(kept.size());
        for (std::int64_t k = 0; k < std::min<std::int64_t>(ro.sink, len); ++k)
          CHECK(std::binary_search(got.begin(), got.end(), kept[k]));
        for (std::int64_t k = std::max<std::int64_t>(0, len - ro.recent); k < len; ++k)
          CHECK(std::binary_search(got.begin(), got.end(), kept[k]));
        CHECK(std::is_sorted(got.begin(), got.end()));
        for (auto x : got) CHECK(std::binary_search(kept.begin(), kept.end(), x));
        if (exact_selection) {
          const auto want = models[s].select(hist, s, h, &q[std::size_t(s) * sc.q_heads * sc.dim]);
          REQUIRE(got == want);
        }
        trace.insert(trace.end(), got.begin(), got.end());
        trace.push_back(-1);
      }
    }
    const auto want = ref::attend_all(hist, q, sc.q_heads, sel, cache.softmax_scale());
    CHECK(ref::rel_l2(out, want) < (std::is_same_v<T, float> ? 1e-5 : 1e-2));
  }
  return trace;
}

template <class Cache>
typename Cache::options small_options() {
  typename Cache::options o;
  o.segmenter.boundaries = {boundary};
  o.selector.budget = 96;
  o.selector.sink = 8;
  o.selector.recent = 8;
  return o;
}

} // namespace

TEST_CASE("sentence_kv (pre-filter on) matches the naive reference step by step") {
  using C = skv::sentence_kv<float>;
  auto o = small_options<C>();
  scenario sc;
  run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
}

TEST_CASE("sentence_kv_lossless keeps every prompt token and matches the reference") {
  using C = skv::sentence_kv_lossless<float>;
  auto o = small_options<C>();
  scenario sc;
  sc.lengths = {900, 333, 64};
  run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
}

TEST_CASE("sentence_kv_paper (no sink, recent or fallback) matches the reference") {
  using C = skv::sentence_kv_paper<float>;
  auto o = small_options<C>();
  o.selector.sink = o.selector.recent = 0;
  scenario sc;
  sc.q_heads = 4;
  sc.kv_heads = 4;
  run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
}

TEST_CASE("sentence length limits: max splits long runs, min merges short sentences") {
  using C = skv::sentence_kv_lossless<float>;
  auto o = small_options<C>();
  o.segmenter.max_length = 20;
  o.segmenter.min_length = 5;
  scenario sc;
  sc.mean_len = 40; // long unpunctuated runs
  run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
}

TEST_CASE_TEMPLATE("half and bfloat16 storage: properties and attention accuracy hold", T, skv::half, skv::bfloat16) {
  using C = skv::sentence_kv<T>;
  auto o = small_options<C>();
  scenario sc;
  sc.dim = 128;
  run_against_reference<C>(o, sc, false, reference_options(o.selector, o.segmenter));
}

TEST_CASE("deterministic across runs; the selection trace is dumped for the cross-backend comparison") {
  using C = skv::sentence_kv<float>;
  auto o = small_options<C>();
  scenario sc;
  sc.steps = 25;
  const auto a = run_against_reference<C>(o, sc, false, reference_options(o.selector, o.segmenter));
  const auto b = run_against_reference<C>(o, sc, false, reference_options(o.selector, o.segmenter));
  CHECK(a == b);
  if (const char* path = std::getenv("SKV_SELECTION_DUMP")) {
    std::ofstream f(path);
    for (auto x : a) f << x << '\n';
  }
}

TEST_CASE("host_offloader: fetches only what is not resident, and the ledger counts exactly that") {
  using C = skv::sentence_kv_lossless<float>;
  auto o = small_options<C>();
  o.selector.fallback = false;
  auto b = ref::make_batch({2000}, 8, 2, 64, 3);
  std::mt19937 rng(4);
  b.ids = text_ids(b.rows(), 15, rng);
  C cache({1, 8, 2, 64}, o);
  ref::typed_batch<float> tb(b);
  cache.prefill(0, tb.args());
  const auto m0 = cache.ledger();
  CHECK(m0.moved_to_slow == 2000u * 2 * (2 * 64 * sizeof(float) + 4)); // the prompt went to the slow tier
  CHECK(m0.moved_to_fast == 0);
  const std::size_t row = 2 * 64 * sizeof(float);
  auto st = ref::make_step(1, 8, 2, 64, rng);
  st.ids = {7};
  ref::typed_step<float> ts(st);
  std::vector<float> out(8 * 64);
  cache.step(0, ts.args(), skv::nhd(out.data(), 8, 64));
  const auto m1 = cache.ledger();
  CHECK(cache.offloader(0).last_copied() == cache.selection_nnz(0)); // empty buffer: everything is fetched
  CHECK(m1.moved_to_fast == std::size_t(cache.selection_nnz(0)) * row);
  // the same query again (a non-boundary token): the selection barely moves, so almost nothing is fetched
  ts.k = ref::convert<float>(st.k);
  cache.step(0, ts.args(), skv::nhd(out.data(), 8, 64));
  const auto m2 = cache.ledger();
  CHECK(cache.offloader(0).last_copied() < cache.selection_nnz(0) / 4);
  CHECK(m2.moved_to_fast == std::size_t(cache.offloader(0).last_copied()) * row);
  // the fast tier holds summaries and a budget-sized buffer, not the cache
  skv::full_kv<float> full({1, 8, 2, 64});
  full.prefill(0, tb.args());
  CHECK(m2.fast_bytes * 3 < full.ledger().fast_bytes);
  CHECK(m2.slow_bytes >= 2000u * 2 * row);
}

TEST_CASE("slot swaps: fixed chunks instead of sentences, min/max bounds instead of mean keys, eviction instead of "
          "offload") {
  scenario sc;
  SUBCASE("fixed_segmenter + mean keys") {
    using C = skv::kv_cache<skv::fixed_segmenter<>, skv::mean_key_summarizer,
                            skv::semantic_topk_selector<skv::sentence_kv_defaults>, skv::host_offloader, float>;
    C::options o;
    o.segmenter.size = 10;
    o.selector.budget = 96;
    o.selector.sink = o.selector.recent = 8;
    auto ro = reference_options(o.selector, skv::sentence_segmenter::options{});
    ro.fixed = 10;
    run_against_reference<C>(o, sc, true, ro);
  }
  SUBCASE("sentences + min/max bounds") {
    using C = skv::kv_cache<skv::sentence_segmenter, skv::minmax_key_summarizer,
                            skv::semantic_topk_selector<skv::sentence_kv_defaults>, skv::host_offloader, float>;
    auto o = small_options<C>();
    auto ro = reference_options(o.selector, o.segmenter);
    ro.minmax = true;
    run_against_reference<C>(o, sc, true, ro);
  }
  SUBCASE("sentences + mean keys, retained tokens kept on the fast tier (pre-filter evicts, no offload)") {
    using C = skv::kv_cache<skv::sentence_segmenter, skv::mean_key_summarizer,
                            skv::semantic_topk_selector<skv::sentence_kv_defaults>, skv::device_offloader, float>;
    auto o = small_options<C>();
    run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
  }
}

TEST_CASE("SentenceKV bad input: clear errors, or documented behaviour") {
  using C = skv::sentence_kv<float>;
  C::options o;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o), doctest::Contains("argument 'boundaries' is empty"), skv::invalid_argument);
  o.segmenter.boundaries = {boundary};
  o.selector.budget = 64;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o), doctest::Contains("argument 'budget' is 64; allowed: > sink + recent (64)"),
                       skv::invalid_argument);
  o.selector.budget = 1024;
  o.selector.retention = 0.5f;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o), doctest::Contains("argument 'retention' is 0.5; allowed: >= 1"),
                       skv::invalid_argument);
  o.selector.retention = 3.f;
  C cache({1, 8, 2, 64}, o);
  CHECK_THROWS_WITH_AS(cache.select(0), doctest::Contains("call prefill() for it first"), skv::logic_error);

  SUBCASE("a prompt with no boundary is one sentence; a sentence longer than the budget is cut") {
    auto small = small_options<skv::sentence_kv_lossless<float>>();
    small.selector.fallback = false;
    skv::sentence_kv_lossless<float> c({1, 8, 2, 64}, small);
    auto b = ref::make_batch({500}, 8, 2, 64, 8);
    std::fill(b.ids.begin(), b.ids.end(), 5);
    ref::typed_batch<float> tb(b);
    c.prefill(0, tb.args());
    CHECK(c.segment_begins(0, 0) == std::vector<std::int32_t>{0});
    std::mt19937 rng(2);
    auto st = ref::make_step(1, 8, 2, 64, rng);
    st.ids = {5};
    ref::typed_step<float> ts(st);
    std::vector<float> out(8 * 64);
    c.step(0, ts.args(), skv::nhd(out.data(), 8, 64));
    const auto sel = c.selection(0);
    // sink 8 + the first 80 tokens of the one sentence after the sink + recent 8
    std::vector<std::int32_t> want = ref::iota(88);
    for (int i = 493; i < 501; ++i) want.push_back(i);
    CHECK(std::vector<std::int32_t>(sel.indices.begin(), sel.indices.begin() + sel.indptr[1]) == want);
  }
}

TEST_CASE("sentence boundaries derived from a vocabulary") {
  const std::vector<std::string> vocab = {".",   "Hello", " world", ".\"", "!\n", "?)",   " ...", "\n\n",
                                          "\n",  "3.5",   "U.S",    " a",  "。",  "！」", "e.g.", " \xE2\x80\x9D",
                                          ".\n", "?",     "'",      ""};
  const auto ids = skv::sentence_boundaries(vocab);
  CHECK(ids == std::vector<std::int32_t>{0, 3, 4, 5, 6, 7, 12, 13, 14, 16, 17});
}

} // namespace sentence_kv_test
