// Every bad input gets a clear error naming the argument, its value and what is allowed; nothing cached is lost.
#include <doctest/doctest.h>

#include <limits>

#include "reference.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace errors_test {

namespace {
using cache_t = skv::streaming_llm<float>;
constexpr int QH = 8, KH = 2, D = 64;

cache_t::options small_budget() {
  cache_t::options o;
  o.selector.budget = 40;
  o.selector.retention.sink = 4;
  o.check_values = true;
  return o;
}

//! One decode step must still agree with the reference over the exported selection.
void check_still_answers(cache_t& cache, ref::history& hist, std::mt19937& rng) {
  const auto st = ref::make_step(1, QH, KH, D, rng);
  hist.add_step(st);
  ref::typed_step<float> ts(st);
  std::vector<float> out(QH * D);
  cache.step(0, ts.args(), ref::out_view(out, QH, D));
  const auto sel = cache.selection(0);
  const auto want = ref::attend_all(hist, st.q, QH, sel, cache.softmax_scale());
  CHECK(ref::rel_l2(out, want) < 1e-5);
  CHECK(sel.indptr.back() == 2 * std::min<std::int64_t>(40, cache.length(0, 0)));
}
} // namespace

TEST_CASE("constructor rejects impossible shapes and options") {
  CHECK_THROWS_WITH_AS(cache_t({1, 6, 4, 64}), doctest::Contains("argument 'num_q_heads' is 6"), skv::invalid_argument);
  CHECK_THROWS_WITH_AS(cache_t({1, 8, 2, 72}),
                       doctest::Contains("argument 'head_dim' is 72; allowed: 64, 96, 128 or 256"),
                       skv::invalid_argument);
  CHECK_THROWS_WITH_AS(cache_t({0, 8, 2, 64}), doctest::Contains("argument 'num_layers' is 0"), skv::invalid_argument);
  cache_t::options o;
  o.selector.budget = 4;
  o.selector.retention.sink = 4;
  CHECK_THROWS_WITH_AS(cache_t({1, 8, 2, 64}, o), doctest::Contains("argument 'budget' is 4; allowed: > sink (4)"),
                       skv::invalid_argument);
}

TEST_CASE("bad prefill and decode inputs leave the cache intact") {
  auto b = ref::make_batch({120}, QH, KH, D, 5);
  ref::typed_batch<float> tb(b);
  cache_t cache({2, QH, KH, D}, small_budget());
  ref::history hist{KH, D, {}, {}, {}};
  hist.add_prompt(b);
  std::mt19937 rng(9);

  SUBCASE("append before prefill") {
    const auto st = ref::make_step(1, QH, KH, D, rng);
    ref::typed_step<float> ts(st);
    CHECK_THROWS_WITH_AS(cache.append(0, ts.args()), doctest::Contains("call prefill() for it first"),
                         skv::logic_error);
    CHECK_THROWS_AS(cache.select(0), skv::logic_error);
    return;
  }
  cache.prefill(0, tb.args());
  check_still_answers(cache, hist, rng);

  SUBCASE("unknown layer") {
    CHECK_THROWS_WITH_AS(cache.prefill(2, tb.args()), doctest::Contains("argument 'layer' is 2; allowed: [0, 2)"),
                         skv::invalid_argument);
    CHECK_THROWS_WITH_AS(cache.prefill(-1, tb.args()), doctest::Contains("argument 'layer' is -1"),
                         skv::invalid_argument);
  }
  SUBCASE("views whose extents disagree with the shape") {
    auto a = tb.args();
    a.k.head_dim = 128;
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("argument 'k.head_dim' is 128; allowed: 64"),
                         skv::invalid_argument);
    a = tb.args();
    a.v.heads = 4;
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("argument 'v.heads' is 4; allowed: 2"),
                         skv::invalid_argument);
    a = tb.args();
    a.q.heads = 6;
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("argument 'q.heads' is 6; allowed: 8"),
                         skv::invalid_argument);
    a = tb.args();
    a.k.tokens = 200;
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("argument 'k.tokens' is 200; allowed: 120"),
                         skv::invalid_argument);
  }
  SUBCASE("strides under which rows overlap") {
    auto a = tb.args();
    a.k.stride_head = 32; // half a head_dim: head h + 1 would read the second half of head h
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("argument 'k.stride_head' is 32; allowed: strides"),
                         skv::invalid_argument);
    a = tb.args();
    a.v.stride_token = 64; // one head per token step: token t + 1 would read head 1 of token t
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("argument 'v.stride_head'"), skv::invalid_argument);
    const auto st = ref::make_step(1, QH, KH, D, rng);
    ref::typed_step<float> ts(st);
    std::vector<float> out(QH * D);
    auto bad_out = ref::out_view(out, QH, D);
    bad_out.stride_head = 16;
    CHECK_THROWS_WITH_AS(cache.step(0, ts.args(), bad_out), doctest::Contains("argument 'out.stride_head' is 16"),
                         skv::invalid_argument);
  }
  SUBCASE("token ids and K/V lengths disagree") {
    auto a = tb.args();
    std::vector<std::int32_t> fewer(b.ids.begin(), b.ids.end() - 1);
    a.token_ids = fewer;
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("argument 'token_ids.size()' is 119; allowed: 120"),
                         skv::invalid_argument);
  }
  SUBCASE("empty prompt") {
    auto a = tb.args();
    std::vector<std::int32_t> indptr{0, 0};
    a.indptr = indptr;
    a.token_ids = {};
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("is 0; allowed: >= 1 (an empty prompt"),
                         skv::invalid_argument);
  }
  SUBCASE("null pointers") {
    auto a = tb.args();
    a.k.data = nullptr;
    CHECK_THROWS_WITH_AS(cache.prefill(0, a), doctest::Contains("argument 'k.data' is null"), skv::invalid_argument);
    const auto st = ref::make_step(1, QH, KH, D, rng);
    ref::typed_step<float> ts(st);
    auto d = ts.args();
    d.q.data = nullptr;
    CHECK_THROWS_WITH_AS(cache.append(0, d), doctest::Contains("argument 'q.data' is null"), skv::invalid_argument);
    std::vector<float> out(QH * D);
    CHECK_THROWS_WITH_AS(cache.attend(0, skv::nhd<float>(nullptr, 1, QH, D)),
                         doctest::Contains("argument 'out.data' is null"), skv::invalid_argument);
  }
  SUBCASE("non-finite values") {
    auto bad = b;
    bad.v[77] = std::numeric_limits<float>::quiet_NaN();
    ref::typed_batch<float> tbad(bad);
    CHECK_THROWS_WITH_AS(cache.prefill(0, tbad.args()),
                         doctest::Contains("argument 'v' is 1 rows with non-finite values"), skv::invalid_argument);
    auto st = ref::make_step(1, QH, KH, D, rng);
    st.k[3] = INFINITY;
    ref::typed_step<float> ts(st);
    CHECK_THROWS_WITH_AS(cache.append(0, ts.args()), doctest::Contains("argument 'k' is 1 rows with non-finite values"),
                         skv::invalid_argument);
  }
  SUBCASE("decode batch differs from the prefilled batch") {
    const auto st = ref::make_step(2, QH, KH, D, rng);
    ref::typed_step<float> ts(st);
    CHECK_THROWS_WITH_AS(cache.append(0, ts.args()), doctest::Contains("argument 'token_ids.size()' is 2; allowed: 1"),
                         skv::invalid_argument);
  }
  // whatever failed above, layer 0 still holds the prompt and the decoded token, and answers correctly
  CHECK(cache.length(0, 0) == 121);
  check_still_answers(cache, hist, rng);
}

} // namespace errors_test
