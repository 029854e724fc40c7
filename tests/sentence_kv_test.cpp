// SentenceKV against the naive reference (tests/sentence_reference.hpp), its properties, slot swaps and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <set>

#include "sentence_harness.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace sentence_kv_test {

using namespace sentence_harness;

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

TEST_CASE("segment_topk options: whole segments (no cut) and the blended query match the reference") {
  for (int variant = 0; variant < 3; ++variant) {
    CAPTURE(variant);
    using C = skv::sentence_kv_lossless<float>;
    auto o = small_options<C>();
    o.selector.choice.whole_segments = variant != 1;
    if (variant >= 1) o.selector.choice.query = skv::query_mode::blend;
    scenario sc;
    sc.lengths = {700, 251};
    run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
  }
  { // current_layers: layer 0 ranks by the current query although `query` says the open sentence's mean
    using C = skv::sentence_kv_lossless<float>;
    auto o = small_options<C>();
    o.selector.choice.current_layers = 1;
    auto ro = reference_options(o.selector, o.segmenter);
    ro.mean_query = false;
    scenario sc;
    sc.lengths = {700, 251};
    run_against_reference<C>(o, sc, true, ro);
  }
  using P = skv::sentence_kv<float>; // with the pre-filter, too
  auto o = small_options<P>();
  o.selector.choice.whole_segments = true;
  o.selector.choice.query = skv::query_mode::blend;
  scenario sc;
  run_against_reference<P>(o, sc, true, reference_options(o.selector, o.segmenter));
}

TEST_CASE("warmup: the first decode steps after a prefill attend to every retained token, then selection starts") {
  SUBCASE("lossless and pre-filtered, against the reference step by step") {
    using C = skv::sentence_kv_lossless<float>;
    auto o = small_options<C>();
    o.selector.choice.warmup = 7;
    scenario sc;
    sc.lengths = {900, 333};
    run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
    using P = skv::sentence_kv<float>;
    auto op = small_options<P>();
    op.selector.choice.warmup = 3;
    run_against_reference<P>(op, scenario{}, true, reference_options(op.selector, op.segmenter));
  }
  SUBCASE("steps 1..warmup hold the whole prompt and every decoded token; the next step is within the budget") {
    using C = skv::sentence_kv_lossless<float>;
    auto o = small_options<C>();
    o.selector.choice.fallback = false; // only the warmup makes a step dense
    o.selector.choice.warmup = 5;
    C c({1, 8, 2, 64}, o);
    std::mt19937 rng(3);
    auto b = ref::make_batch({600}, 8, 2, 64, 5);
    b.ids = text_ids(600, 12, rng);
    ref::typed_batch<float> tb(b);
    c.prefill(0, tb.args());
    std::vector<float> out(8 * 64);
    for (int step = 1; step <= 7; ++step) {
      CAPTURE(step);
      auto st = ref::make_step(1, 8, 2, 64, rng);
      ref::typed_step<float> ts(st);
      c.step(0, ts.args(), ref::out_view(out, 8, 64));
      const auto sel = c.selection(0);
      for (int kh = 0; kh < 2; ++kh) {
        const std::int32_t n = sel.indptr[kh + 1] - sel.indptr[kh];
        if (step <= 5) CHECK(n == 600 + step);
        else CHECK(n <= o.selector.budget);
      }
    }
    C again({1, 8, 2, 64}, o); // a new prefill starts a new warmup
    again.prefill(0, tb.args());
    auto st = ref::make_step(1, 8, 2, 64, rng);
    ref::typed_step<float> ts(st);
    again.step(0, ts.args(), ref::out_view(out, 8, 64));
    CHECK(again.selection_nnz(0) == 2 * 601);
  }
}

TEST_CASE("cross-layer guidance: guided layers rank sentences by the guide layer's estimated attention shares") {
  scenario sc;
  sc.lengths = {900, 333};
  sc.layers = 4;
  sc.steps = 24;
  using C = skv::sentence_kv_lossless<float>;
  SUBCASE("layers 0-1 follow layer 2's previous step; layer 3 ranks by its own summaries") {
    auto o = small_options<C>();
    o.selector.choice.guided_layers = 2;
    o.selector.choice.guide_layer = 2;
    const auto traced = run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
    // -1, -1: the first half of the layers (2 of 4) guided by layer 2 * 4 / 3 = 2: the same selections
    auto automatic = o;
    automatic.selector.choice.guided_layers = automatic.selector.choice.guide_layer = -1;
    CHECK(run_against_reference<C>(automatic, sc, true, reference_options(o.selector, o.segmenter)) == traced);
  }
  SUBCASE("layer 0 follows layer 1's previous step, layers 2-3 its step; with the pre-filter and a pyramid") {
    auto o = small_options<C>();
    o.selector.choice.guided_layers = 4;
    o.selector.choice.guide_layer = 1;
    run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
    using P = skv::sentence_kv<float>;
    auto op = small_options<P>();
    op.selector.choice.guided_layers = 4;
    op.selector.choice.guide_layer = 1;
    op.selector.choice.pyramid_beta = 2;
    run_against_reference<P>(op, sc, true, reference_options(op.selector, op.segmenter));
  }
  SUBCASE("one sequence, no fallback, the last layer guiding") {
    auto o = small_options<C>();
    o.selector.choice.fallback = false;
    o.selector.choice.guided_layers = 3;
    o.selector.choice.guide_layer = 3;
    scenario one = sc;
    one.lengths = {1200};
    run_against_reference<C>(o, one, true, reference_options(o.selector, o.segmenter));
  }
  SUBCASE("every KV head of a guided layer takes the same sentences; a new prefill forgets the guide") {
    auto o = small_options<C>();
    o.selector.choice.fallback = false;
    o.selector.choice.guided_layers = 1;
    o.selector.choice.guide_layer = 1;
    C cache({2, 8, 2, 64}, o);
    std::mt19937 rng(3);
    auto b = ref::make_batch({900}, 8, 2, 64, 4);
    b.ids = text_ids(900, 12, rng);
    ref::typed_batch<float> tb(b);
    std::vector<float> out(8 * 64);
    auto heads_agree = [&] { // the two KV heads' selections cover the same sentences
      const auto sel = cache.selection(0);
      const auto begins = cache.segment_begins(0, 0);
      auto sentences = [&](int p) {
        std::set<std::size_t> s;
        for (auto i = sel.indptr[p]; i < sel.indptr[p + 1]; ++i) {
          const auto pos = sel.indices[std::size_t(i)];
          if (pos < 8 || pos >= begins.back()) continue; // sinks and the newest sentences: by position, not rank
          s.insert(std::size_t(std::upper_bound(begins.begin(), begins.end(), pos) - begins.begin()));
        }
        return s;
      };
      return sentences(0) == sentences(1);
    };
    for (int round = 0; round < 2; ++round) {
      for (int l = 0; l < 2; ++l) cache.prefill(l, tb.args());
      for (int step = 0; step < 3; ++step) {
        auto st = ref::make_step(1, 8, 2, 64, rng);
        ref::typed_step<float> ts(st);
        for (int l = 0; l < 2; ++l) cache.step(l, ts.args(), ref::out_view(out, 8, 64));
        // step 0 after a prefill: no guide yet, each head ranks by its own keys (random heads disagree)
        if (step > 0) CHECK(heads_agree());
        else CHECK_FALSE(heads_agree());
      }
    }
  }
  SUBCASE("bad input names the option and leaves the cache unbuilt") {
    auto o = small_options<C>();
    o.selector.choice.guided_layers = 5;
    CHECK_THROWS_WITH_AS(
        C({4, 8, 2, 64}, o),
        doctest::Contains("argument 'guided_layers' is 5; allowed: in [-1, 4] (0 = off, -1 = the first half)"),
        skv::invalid_argument);
    o.selector.choice.guided_layers = -2;
    CHECK_THROWS_WITH_AS(C({4, 8, 2, 64}, o), doctest::Contains("argument 'guided_layers' is -2; allowed: in [-1, 4]"),
                         skv::invalid_argument);
    o.selector.choice.guided_layers = 2;
    o.selector.choice.guide_layer = 4;
    CHECK_THROWS_WITH_AS(C({4, 8, 2, 64}, o),
                         doctest::Contains("argument 'guide_layer' is 4; allowed: -1 (2 * layers / 3) or "),
                         skv::invalid_argument);
    CHECK_THROWS_WITH_AS(C({4, 8, 2, 64}, o), doctest::Contains("when guided_layers != 0"), skv::invalid_argument);
    o.selector.choice.guide_layer = -2;
    CHECK_THROWS_WITH_AS(C({4, 8, 2, 64}, o), doctest::Contains("argument 'guide_layer' is -2"),
                         skv::invalid_argument);
  }
}

TEST_CASE("decode pyramid: each layer selects its share of the budget, as the reference does with that budget") {
  scenario sc;
  sc.lengths = {900, 333};
  sc.layers = 4;
  sc.steps = 16;
  SUBCASE("lossless and pre-filtered, against the reference layer by layer") {
    using C = skv::sentence_kv_lossless<float>;
    auto o = small_options<C>(); // budget 96, sink 8, recent 8: layers 0..3 select 136, 110, 84, 58 at most
    o.selector.choice.pyramid_beta = 2;
    run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
    using P = skv::sentence_kv<float>; // the pre-filter keeps r x the mean budget in every layer
    auto op = small_options<P>();
    op.selector.choice.pyramid_beta = 2;
    run_against_reference<P>(op, sc, true, reference_options(op.selector, op.segmenter));
  }
  SUBCASE("the budgets fall with depth; the fast tier holds what the uniform budget's holds") {
    using C = skv::sentence_kv_lossless<float>;
    auto o = small_options<C>();
    o.selector.choice.fallback = false;
    auto flat = o;
    o.selector.choice.pyramid_beta = 2;
    C pyr({4, 8, 2, 64}, o), uni({4, 8, 2, 64}, flat);
    std::mt19937 rng(5);
    auto b = ref::make_batch({900}, 8, 2, 64, 9);
    b.ids = text_ids(900, 12, rng);
    ref::typed_batch<float> tb(b);
    auto st = ref::make_step(1, 8, 2, 64, rng);
    ref::typed_step<float> ts(st);
    std::vector<float> out(8 * 64);
    std::int64_t total = 0;
    for (C* c : {&pyr, &uni})
      for (int l = 0; l < 4; ++l) c->prefill(l, tb.args());
    for (C* c : {&pyr, &uni})
      for (int l = 0; l < 4; ++l) c->step(l, ts.args(), ref::out_view(out, 8, 64));
    const std::int64_t want[4] = {136, 110, 84, 58}; // 16 + (120, 94, 68, 42): 2 x 80 - 40 falling by 80 / 3
    for (int l = 0; l < 4; ++l) {
      CAPTURE(l);
      CHECK(pyr.selection_nnz(l) == 2 * want[l]);
      CHECK(uni.selection_nnz(l) == 2 * 96);
      total += want[l];
    }
    CHECK(total == 388); // the mean over layers is 97 (the pyramid's integer steps), the uniform budget 96
    const auto mp = pyr.ledger(), mu = uni.ledger();
    CHECK(double(mp.fast_bytes) <= 1.02 * double(mu.fast_bytes));
    CHECK(double(mp.fast_bytes) >= 0.98 * double(mu.fast_bytes));
  }
}

TEST_CASE("heavy tokens: the prompt tokens its last queries attend to most stay selected, inside the budget") {
  SUBCASE("lossless and pre-filtered, against the reference step by step") {
    using C = skv::sentence_kv_lossless<float>;
    auto o = small_options<C>();
    for (int heavy : {1, 12, 40}) {
      CAPTURE(heavy);
      o.selector.choice.heavy = heavy;
      o.selector.choice.heavy_window = heavy == 12 ? 5 : 32;
      scenario sc;
      sc.lengths = {900, 333, 64, 130};
      run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
    }
    using P = skv::sentence_kv<float>;
    auto op = small_options<P>();
    op.selector.choice.heavy = 16;
    scenario sc;
    run_against_reference<P>(op, sc, true, reference_options(op.selector, op.segmenter));
  }
  SUBCASE("planted tokens that the window's queries seek are kept at every step; without heavy they are not") {
    constexpr int Q = 8, KV = 2, D = 64, N = 1500;
    const std::vector<int> planted = {211, 480, 733, 1002, 1290};
    std::mt19937 rng(12);
    auto b = ref::make_batch({N}, Q, KV, D, 21);
    b.ids = text_ids(N, 12, rng);
    for (int t : planted) // every KV head's key points along the window queries' mean direction, strongly
      for (int h = 0; h < KV; ++h) {
        std::vector<double> dir(D, 0.0);
        for (int i = N - 32; i < N; ++i)
          for (int g = 0; g < Q / KV; ++g)
            for (int d = 0; d < D; ++d) dir[d] += b.q[(std::size_t(i) * Q + h * (Q / KV) + g) * D + d];
        double norm = 0;
        for (double x : dir) norm += x * x;
        for (int d = 0; d < D; ++d) b.k[(std::size_t(t) * KV + h) * D + d] = float(12.0 * dir[d] / std::sqrt(norm));
      }
    auto run = [&](int heavy) {
      auto o = small_options<skv::sentence_kv_lossless<float>>();
      o.selector.choice.heavy = heavy;
      o.selector.choice.fallback = false;
      skv::sentence_kv_lossless<float> c({1, Q, KV, D}, o);
      ref::typed_batch<float> tb(b);
      c.prefill(0, tb.args());
      std::mt19937 r2(5);
      int steps_with_all = 0;
      for (int step = 0; step < 20; ++step) {
        auto st = ref::make_step(1, Q, KV, D, r2);
        st.ids = {5};
        ref::typed_step<float> ts(st);
        std::vector<float> out(Q * D);
        c.step(0, ts.args(), ref::out_view(out, Q, D));
        const auto sel = c.selection(0);
        bool all = true;
        for (int p = 0; p < KV; ++p) {
          const std::vector<std::int32_t> got(sel.indices.begin() + sel.indptr[p],
                                              sel.indices.begin() + sel.indptr[p + 1]);
          CHECK(std::int64_t(got.size()) <= o.selector.budget);
          CHECK(std::adjacent_find(got.begin(), got.end(), std::greater_equal<>()) == got.end()); // increasing
          for (int t : planted) all &= std::binary_search(got.begin(), got.end(), t);
        }
        steps_with_all += all;
      }
      return steps_with_all;
    };
    CHECK(run(8) == 20);
    CHECK(run(0) < 20);
  }
}

TEST_CASE("sentence_kv_paper (no sink, recent or fallback) matches the reference") {
  using C = skv::sentence_kv_paper<float>;
  auto o = small_options<C>();
  o.selector.choice.sink = o.selector.choice.recent = 0;
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
  o.selector.choice.fallback = false;
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
  cache.step(0, ts.args(), ref::out_view(out, 8, 64));
  const auto m1 = cache.ledger();
  CHECK(cache.offloader(0).last_copied() == cache.selection_nnz(0)); // empty buffer: everything is fetched
  CHECK(m1.moved_to_fast == std::size_t(cache.selection_nnz(0)) * row);
  // the same query again (a non-boundary token): the selection barely moves, so almost nothing is fetched
  ts.k = ref::convert<float>(st.k);
  cache.step(0, ts.args(), ref::out_view(out, 8, 64));
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
  using prefiltered = skv::composed_selector<skv::keep_window_top<skv::sentence_kv_prefilter>, skv::segment_topk<>>;
  SUBCASE("fixed_segmenter + mean keys") {
    using C = skv::kv_cache<skv::fixed_segmenter<>, skv::mean_key_summarizer, prefiltered, skv::host_offloader, float>;
    C::options o;
    o.segmenter.size = 10;
    o.selector.budget = 96;
    o.selector.choice.sink = o.selector.choice.recent = 8;
    auto ro = reference_options(o.selector, skv::sentence_segmenter::options{});
    ro.fixed = 10;
    run_against_reference<C>(o, sc, true, ro);
  }
  SUBCASE("sentences + min/max bounds") {
    using C =
        skv::kv_cache<skv::sentence_segmenter, skv::minmax_key_summarizer, prefiltered, skv::host_offloader, float>;
    auto o = small_options<C>();
    auto ro = reference_options(o.selector, o.segmenter);
    ro.minmax = true;
    run_against_reference<C>(o, sc, true, ro);
  }
  SUBCASE("sentences + mean keys, retained tokens kept on the fast tier (pre-filter evicts, no offload)") {
    using C =
        skv::kv_cache<skv::sentence_segmenter, skv::mean_key_summarizer, prefiltered, skv::device_offloader, float>;
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
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o),
                       doctest::Contains("argument 'budget' is 64; allowed: > sink + max(recent, 1) + heavy (64)"),
                       skv::invalid_argument);
  o.selector.budget = 100;
  o.selector.choice.heavy = 37;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o),
                       doctest::Contains("argument 'budget' is 100; allowed: > sink + max(recent, 1) + heavy (101)"),
                       skv::invalid_argument);
  o.selector.choice.heavy = -1;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o), doctest::Contains("argument 'heavy' is -1; allowed: >= 0 (0 = off)"),
                       skv::invalid_argument);
  o.selector.choice.heavy = 8;
  o.selector.choice.heavy_window = 0;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o),
                       doctest::Contains("argument 'heavy_window' is 0; allowed: >= 1 when heavy > 0"),
                       skv::invalid_argument);
  o.selector.choice.heavy = 0;
  o.selector.choice.heavy_window = 32;
  o.selector.choice.current_layers = -3;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o), doctest::Contains("argument 'current_layers' is -3; allowed: >= 0"),
                       skv::invalid_argument);
  o.selector.choice.current_layers = 0;
  o.selector.choice.warmup = -1;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o), doctest::Contains("argument 'warmup' is -1; allowed: >= 0 (0 = off)"),
                       skv::invalid_argument);
  o.selector.choice.warmup = 0;
  o.selector.choice.pyramid_beta = -2;
  CHECK_THROWS_WITH_AS(C({4, 8, 2, 64}, o), doctest::Contains("argument 'pyramid_beta' is -2; allowed: >= 0 (0 = off)"),
                       skv::invalid_argument);
  o.selector.choice.pyramid_beta = 100; // budget 100 - 64 always selected: the last of 4 layers would keep none
  CHECK_THROWS_WITH_AS(C({4, 8, 2, 64}, o),
                       doctest::Contains("argument 'pyramid_beta' is 100; allowed: a value that leaves the last layer "
                                         "more than sink + max(recent, 1) + heavy (64) tokens (its budget would be 64)"),
                       skv::invalid_argument);
  o.selector.choice.pyramid_beta = 0;
  o.selector.budget = 1024;
  o.selector.retention.factor = 0.5f;
  CHECK_THROWS_WITH_AS(C({1, 8, 2, 64}, o), doctest::Contains("argument 'factor' is 0.5; allowed: >= 1"),
                       skv::invalid_argument);
  o.selector.retention.factor = 3.f;
  C cache({1, 8, 2, 64}, o);
  CHECK_THROWS_WITH_AS(cache.select(0), doctest::Contains("call prefill() for it first"), skv::logic_error);

  SUBCASE("a prompt with no boundary is one sentence; a sentence longer than the budget is cut") {
    auto small = small_options<skv::sentence_kv_lossless<float>>();
    small.selector.choice.fallback = false;
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
    c.step(0, ts.args(), ref::out_view(out, 8, 64));
    const auto sel = c.selection(0);
    // sink 8 + the first 80 tokens of the one sentence after the sink + recent 8
    std::vector<std::int32_t> want = ref::iota(88);
    for (int i = 493; i < 501; ++i) want.push_back(i);
    CHECK(std::vector<std::int32_t>(sel.indices.begin(), sel.indices.begin() + sel.indptr[1]) == want);
  }
  SUBCASE("sentences whose score is NaN (keys with +inf and -inf) rank as -inf: the selection stays in the budget") {
    auto small = small_options<skv::sentence_kv_lossless<float>>();
    small.selector.choice.fallback = false;
    small.check_values = false;
    skv::sentence_kv_lossless<float> c({1, 8, 2, 64}, small);
    std::mt19937 rng(4);
    auto b = ref::make_batch({3000}, 8, 2, 64, 9);
    b.ids = text_ids(3000, 12, rng);       // ~250 sentences
    for (int t = 100; t < 3000; t += 97) { // KV head 0 of every 8th sentence or so: q . mean key = inf - inf
      b.k[(std::size_t(t) * 2 + 0) * 64 + 3] = std::numeric_limits<float>::infinity();
      b.k[(std::size_t(t) * 2 + 0) * 64 + 7] = -std::numeric_limits<float>::infinity();
    }
    ref::typed_batch<float> tb(b);
    c.prefill(0, tb.args());
    auto st = ref::make_step(1, 8, 2, 64, rng);
    st.ids = {5};
    for (int h = 0; h < 4; ++h) st.q[h * 64 + 3] = st.q[h * 64 + 7] = 1.f; // the group's summed query: > 0 in both
    ref::typed_step<float> ts(st);
    std::vector<float> out(8 * 64);
    c.step(0, ts.args(), ref::out_view(out, 8, 64));
    const auto sel = c.selection(0);
    const std::size_t budget = std::size_t(small.selector.budget);
    for (int p = 0; p < 2; ++p) {
      CAPTURE(p);
      const std::vector<std::int32_t> got(sel.indices.begin() + sel.indptr[p], sel.indices.begin() + sel.indptr[p + 1]);
      CHECK(got.size() == budget); // sink + the best finite sentences + recent: NaN ones never displace them
      CHECK(std::is_sorted(got.begin(), got.end()));
      CHECK(std::adjacent_find(got.begin(), got.end()) == got.end());
      CHECK(got.back() == 3000); // the newest token
      for (int t = 100; t < 3000; t += 97) CHECK(!std::binary_search(got.begin() + 8, got.end() - 8, t));
    }
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
