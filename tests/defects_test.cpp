// Defects found by an independent consumer, each with the test that failed before its fix.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "reference.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace defects_test {

constexpr int QH = 8, KH = 2, D = 64;

TEST_CASE("step() with a bad output view throws before the token is appended") {
  const auto b = ref::make_batch({200}, QH, KH, D, 1);
  ref::typed_batch<float> tb(b);
  skv::full_kv<float> cache({1, QH, KH, D});
  cache.prefill(0, tb.args());
  ref::history hist{KH, D, {}, {}, {}};
  hist.add_prompt(b);
  std::mt19937 rng(2);
  const auto st = ref::make_step(1, QH, KH, D, rng);
  ref::typed_step<float> ts(st);
  CHECK_THROWS_WITH_AS(cache.step(0, ts.args(), skv::nhd<float>(nullptr, 1, QH, D)),
                       doctest::Contains("argument 'out.data' is null"), skv::invalid_argument);
  std::vector<float> wrong(QH * D);
  CHECK_THROWS_WITH_AS(cache.step(0, ts.args(), skv::nhd(wrong.data(), 1, QH / 2, D)),
                       doctest::Contains("argument 'out.heads' is 4; allowed: 8"), skv::invalid_argument);
  CHECK(cache.length(0, 0) == 200);
  CHECK(cache.retained(0, 0, 1) == 200);
  // the same token, now with a good output, is the 201st and attends correctly
  hist.add_step(st);
  std::vector<float> out(QH * D);
  cache.step(0, ts.args(), ref::out_view(out, QH, D));
  CHECK(cache.length(0, 0) == 201);
  CHECK(ref::rel_l2(out, ref::attend_all(hist, st.q, QH, cache.selection(0), cache.softmax_scale())) < 1e-5);
}

//! NaN-ness of every output element matches the double reference's (IEEE semantics, as PyTorch's softmax), and the
//! finite elements match it.
void check_like_reference(const std::vector<float>& out, const std::vector<double>& want, double tol) {
  std::vector<float> got_finite;
  std::vector<double> want_finite;
  for (std::size_t i = 0; i < want.size(); ++i) {
    REQUIRE(std::isnan(out[i]) == std::isnan(want[i]));
    if (!std::isnan(want[i])) {
      got_finite.push_back(out[i]);
      want_finite.push_back(want[i]);
    }
  }
  if (!want_finite.empty()) CHECK(ref::rel_l2(got_finite, want_finite) < tol);
}

TEST_CASE_TEMPLATE("NaN or +inf logits give NaN out, as PyTorch's softmax does; the other heads are untouched", T,
                   float, skv::bfloat16) {
  using C = skv::full_kv<T>;
  typename C::options o;
  o.check_values = false; // the unchecked path is what this is about
  const auto b = ref::make_batch({300, 90}, QH, KH, D, 5);
  ref::typed_batch<T> tb(b);
  C cache({1, QH, KH, D}, o);
  cache.prefill(0, tb.args());
  ref::history hist{KH, D, {}, {}, {}};
  hist.add_prompt(b);
  std::mt19937 rng(6);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-2;
  auto run = [&](ref::step st) {
    ref::typed_step<T> ts(st);
    for (auto* x : {&st.k, &st.v, &st.q}) // what the cache stored
      for (auto& e : *x) e = skv::to_float(skv::from_float<T>(e));
    hist.add_step(st);
    std::vector<float> out(st.q.size());
    cache.step(0, ts.args(), ref::out_view(out, QH, D));
    check_like_reference(out, ref::attend_all(hist, st.q, QH, cache.selection(0), cache.softmax_scale()), tol);
    return out;
  };
  SUBCASE("a NaN query element: that head's output is NaN, no other") {
    auto st = ref::make_step(2, QH, KH, D, rng);
    st.q[(0 * QH + 3) * D + 17] = std::numeric_limits<float>::quiet_NaN();
    const auto out = run(st);
    CHECK(std::isnan(out[(0 * QH + 3) * D]));
    CHECK(!std::isnan(out[(0 * QH + 2) * D]));
  }
  SUBCASE("a NaN value: every head of its KV group is NaN") {
    auto st = ref::make_step(2, QH, KH, D, rng);
    st.v[(1 * KH + 1) * D + 5] = std::numeric_limits<float>::quiet_NaN();
    const auto out = run(st);
    for (int h = 4; h < 8; ++h) CHECK(std::isnan(out[(1 * QH + h) * D + 5]));
    CHECK(!std::isnan(out[(1 * QH + 0) * D + 5]));
  }
  SUBCASE("an infinite key element stays in the cache: later steps follow the reference (NaN where +inf)") {
    auto st = ref::make_step(2, QH, KH, D, rng);
    st.k[(0 * KH + 0) * D + 9] = std::numeric_limits<float>::infinity();
    run(st);
    bool some_nan = false;
    for (int s = 0; s < 3; ++s) {
      const auto out = run(ref::make_step(2, QH, KH, D, rng));
      for (int h = 0; h < 4; ++h) some_nan |= std::isnan(out[std::size_t(h) * D]);
      CHECK(!std::isnan(out[(1 * QH + 0) * D])); // sequence 1 never saw it
    }
    CHECK(some_nan); // q_9 > 0 for some head of the group: its logit is +inf
  }
}

TEST_CASE("attend() repeats without side effects, also for a selector that learns from attention (H2O)") {
  const auto b = ref::make_batch({150}, QH, KH, D, 7);
  ref::typed_batch<float> tb(b);
  skv::h2o<float>::options o;
  o.selector.budget = 64;
  skv::h2o<float> cache({1, QH, KH, D}, o);
  cache.prefill(0, tb.args());
  std::mt19937 rng(8);
  const auto st = ref::make_step(1, QH, KH, D, rng);
  ref::typed_step<float> ts(st);
  std::vector<float> first(QH * D), again(QH * D);
  cache.step(0, ts.args(), ref::out_view(first, QH, D));
  const auto& h2o = cache.selector(0).retention_part();
  std::vector<float> scores;
  for (int p = 0; p < KH; ++p)
    for (int i = 0; i < 64; ++i) scores.push_back(h2o.score(p, i));
  for (int r = 0; r < 3; ++r) {
    cache.attend(0, ref::out_view(again, QH, D));
    CHECK(again == first);
  }
  std::vector<float> after;
  for (int p = 0; p < KH; ++p)
    for (int i = 0; i < 64; ++i) after.push_back(h2o.score(p, i));
  CHECK(after == scores);
  // while a step does learn: the scores move
  cache.step(0, ts.args(), ref::out_view(first, QH, D));
  std::vector<float> stepped;
  for (int p = 0; p < KH; ++p)
    for (int i = 0; i < 64; ++i) stepped.push_back(h2o.score(p, i));
  CHECK(stepped != scores);
}

TEST_CASE_TEMPLATE("reserve() after prefill re-lays what the layers hold and the cache still answers (found by "
                   "skv-fuzz)",
                   Cache, skv::full_kv<float>, skv::sentence_kv_lossless<float>, skv::h2o<float>) {
  const auto b = ref::make_batch({90, 40}, QH, KH, D, 11, false, 30);
  ref::typed_batch<float> tb(b);
  typename Cache::options o;
  if constexpr (requires { o.segmenter.boundaries; }) o.segmenter.boundaries = {1};
  if constexpr (requires { o.selector.budget; }) o.selector.budget = 80;
  Cache cache({1, QH, KH, D}, o);
  cache.prefill(0, tb.args());
  ref::history hist{KH, D, {}, {}, {}};
  hist.add_prompt(b);
  std::mt19937 rng(12);
  std::vector<float> out(2 * QH * D);
  for (int step = 0; step < 6; ++step) {
    if (step == 2) cache.reserve(4, 5000); // the store, the segment table and every buffer move
    const auto st = ref::make_step(2, QH, KH, D, rng, 30);
    hist.add_step(st);
    ref::typed_step<float> ts(st);
    cache.step(0, ts.args(), ref::out_view(out, QH, D));
    CHECK(ref::rel_l2(out, ref::attend_all(hist, st.q, QH, cache.selection(0), cache.softmax_scale())) < 1e-5);
    if (step == 2) { // what the selection is made of is unchanged by the move
      cache.attend(0, ref::out_view(out, QH, D));
      CHECK(ref::rel_l2(out, ref::attend_all(hist, st.q, QH, cache.selection(0), cache.softmax_scale())) < 1e-5);
    }
  }
}

TEST_CASE("per-sequence queries check the sequence and the head, with skv::invalid_argument") {
  const auto b = ref::make_batch({30, 20}, QH, KH, D, 9);
  ref::typed_batch<float> tb(b);
  skv::sentence_kv_lossless<float>::options o;
  o.segmenter.boundaries = {1};
  skv::sentence_kv_lossless<float> cache({2, QH, KH, D}, o);
  cache.prefill(1, tb.args());
  CHECK_THROWS_WITH_AS(cache.retained(1, 2, 0), doctest::Contains("argument 'seq' is 2; allowed: [0, 2)"),
                       skv::invalid_argument);
  CHECK_THROWS_WITH_AS(cache.retained(1, 0, 2), doctest::Contains("argument 'head' is 2; allowed: [0, 2)"),
                       skv::invalid_argument);
  CHECK_THROWS_WITH_AS(cache.retained(1, 0, -1), doctest::Contains("argument 'head' is -1"), skv::invalid_argument);
  CHECK_THROWS_WITH_AS(cache.segment_begins(1, 5), doctest::Contains("argument 'seq' is 5; allowed: [0, 2)"),
                       skv::invalid_argument);
  CHECK_THROWS_WITH_AS(cache.length(1, -1), doctest::Contains("argument 'seq' is -1"), skv::invalid_argument);
  CHECK_THROWS_AS(cache.retained(0, 0, 0), skv::logic_error); // layer 0 holds no prompt
  CHECK(cache.retained(1, 1, 1) == 20);
}

} // namespace defects_test
