// The int8 sketch of the mean key (detail/sketch.hpp, sketched_mean_key_summarizer): its bounds hold, and the
// sketched selection is exactly the selection of scoring every summary, ties and non-finite values included.
#include <doctest/doctest.h>

#include <skv/skv.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "sentence_harness.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace sketch_test {

using namespace sentence_harness;

template <class T, class Sum, class Choice = skv::sentence_kv_choice>
using lossless_with =
    skv::kv_cache<skv::sentence_segmenter, Sum, skv::composed_selector<skv::keep_all, skv::segment_topk<Choice>>,
                  skv::host_offloader, T>;
template <class T, class Sum>
using prefiltered_with =
    skv::kv_cache<skv::sentence_segmenter, Sum,
                  skv::composed_selector<skv::keep_window_top<skv::sentence_kv_prefilter>, skv::segment_topk<>>,
                  skv::host_offloader, T>;

static_assert(skv::sketched_summarizer<skv::sketched_mean_key_summarizer>);
static_assert(!skv::sketched_summarizer<skv::mean_key_summarizer>);
static_assert(!skv::sketched_summarizer<skv::minmax_key_summarizer>);

TEST_CASE_TEMPLATE("sketch bounds contain the float score, for every storage type and scale", T, float, skv::half,
                   skv::bfloat16) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n01(0.f, 1.f);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (int dim : {64, 128, 80}) {
    std::vector<T> s(dim);
    std::vector<float> q(dim);
    std::vector<std::uint8_t> code(dim);
    std::vector<std::int8_t> qcode(dim);
    float meta[skv::detail::sketch_meta_width], qmeta[skv::detail::query_meta_width];
    double widest = 0;
    for (int trial = 0; trial < 2000; ++trial) {
      const float sscale = std::ldexp(1.f, trial % 20 - 10), qscale = std::ldexp(1.f, (trial / 20) % 12 - 6);
      for (int d = 0; d < dim; ++d) {
        // a few outlier dimensions, as in real keys, and exact zeros
        const float x = (d % 17 == 3 ? 30.f : 1.f) * n01(rng) * sscale;
        s[d] = skv::from_float<T>(trial % 5 == 0 && d % 3 == 0 ? 0.f : x);
        q[d] = (trial % 7 == 0 ? u(rng) : n01(rng)) * qscale;
      }
      skv::detail::encode_sketch(s.data(), dim, code.data(), meta);
      skv::detail::encode_query(q.data(), dim, qcode.data(), qmeta);
      float lo, up;
      REQUIRE(skv::detail::sketch_bounds(qcode.data(), qmeta, code.data(), meta, dim, lo, up));
      const float exact = skv::mean_key_summarizer::score<T>(q.data(), 1, dim, s.data());
      INFO("dim " << dim << " trial " << trial);
      CHECK(lo <= exact);
      CHECK(exact <= up);
      double qn = 0, sn = 0;
      for (int d = 0; d < dim; ++d) {
        qn += double(q[d]) * q[d];
        sn += double(skv::to_float(s[d])) * skv::to_float(s[d]);
      }
      if (sn > 0) widest = std::max(widest, (double(up) - lo) / std::sqrt(qn * sn));
    }
    // a useful sketch: the interval is a small fraction of |q| |s| (each code within half a step of max|s| / 127)
    CHECK(widest < 0.25);
  }
}

TEST_CASE("sketch of zero, infinite and NaN summaries") {
  const int dim = 64;
  std::vector<float> s(dim, 0.f), q(dim, 1.f);
  std::vector<std::uint8_t> code(dim);
  std::vector<std::int8_t> qcode(dim);
  float meta[skv::detail::sketch_meta_width], qmeta[skv::detail::query_meta_width], lo, up;
  auto bounds = [&] {
    skv::detail::encode_sketch(s.data(), dim, code.data(), meta);
    skv::detail::encode_query(q.data(), dim, qcode.data(), qmeta);
    return skv::detail::sketch_bounds(qcode.data(), qmeta, code.data(), meta, dim, lo, up);
  };
  CHECK(bounds());
  CHECK(lo <= 0.f);
  CHECK(up >= 0.f);
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    s[5] = bad;
    CHECK_FALSE(bounds());
    CHECK(lo == -std::numeric_limits<float>::infinity());
    CHECK(up == std::numeric_limits<float>::infinity());
  }
  s[5] = 1.f;
  q[0] = std::numeric_limits<float>::quiet_NaN(); // a NaN query: no finite bound either
  CHECK_FALSE(bounds());
  q[0] = std::numeric_limits<float>::infinity();
  CHECK_FALSE(bounds());
  std::fill(q.begin(), q.end(), 0.f); // a zero query: the score is 0, inside the bounds
  CHECK(bounds());
  CHECK(lo <= 0.f);
  CHECK(up >= 0.f);
}

//! The query's rounding lined up with the summaries' codes: q_d = k_d + 0.49 sign(c_d) (tau = 1, so the residual
//! is 0.49 sign(c_d)) against summaries that the codes represent exactly (no residual). The score then sits far
//! from sigma tau I, near the edge the ||rq|| g term allows: the bounds of the portable path and of the 16-row
//! kernel (`sketch_bounds_rows`, AVX-512 VNNI where built with it) must both contain it. Rows without retained
//! tokens bound to (-inf, -inf), a row with an infinite value to (-inf, +inf).
TEST_CASE("sketch bounds hold where the query's rounding lines up with the codes") {
  const int dim = 128, rows = 48;
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> mag(0, 127), k(-100, 100), coin(0, 1);
  std::vector<int> sign(dim);
  for (auto& x : sign) x = coin(rng) ? 1 : -1;
  sign[0] = 1;
  std::vector<float> q(dim), s(std::size_t(rows) * dim);
  q[0] = 127.f;
  for (int d = 1; d < dim; ++d) q[d] = float(k(rng)) + 0.49f * float(sign[d]);
  for (int r = 0; r < rows; ++r) {
    s[std::size_t(r) * dim] = 63.5f; // max|s| = 127 * 0.5: sigma = 0.5, every value a multiple of it
    for (int d = 1; d < dim; ++d) s[std::size_t(r) * dim + d] = 0.5f * float(sign[d] * mag(rng));
  }
  s[std::size_t(40) * dim + 7] = std::numeric_limits<float>::infinity();
  std::vector<std::uint8_t> code(std::size_t(rows) * dim);
  std::vector<float> meta(std::size_t(rows) * skv::detail::sketch_meta_width), lo(rows), up(rows);
  for (int r = 0; r < rows; ++r)
    skv::detail::encode_sketch(s.data() + std::size_t(r) * dim, dim, code.data() + std::size_t(r) * dim,
                               meta.data() + std::size_t(r) * skv::detail::sketch_meta_width);
  std::vector<std::int8_t> qcode(dim);
  float qmeta[skv::detail::query_meta_width];
  skv::detail::encode_query(q.data(), dim, qcode.data(), qmeta);
  CHECK(qmeta[0] == 1.f);
  std::vector<std::int32_t> count(rows, 3);
  count[5] = count[21] = 0;
  const std::int64_t off = 0;
  const std::int32_t nrows = rows;
  skv::detail::sketch_bounds_rows{qcode.data(), qmeta, code.data(), meta.data(), &off, &nrows, count.data(),
                                  lo.data(), up.data(), dim, 1}(0);
  for (int r = 0; r < rows; ++r) {
    INFO("row " << r);
    const float* row = s.data() + std::size_t(r) * dim;
    if (count[r] == 0) {
      CHECK(lo[r] == -std::numeric_limits<float>::infinity());
      CHECK(up[r] == -std::numeric_limits<float>::infinity());
      continue;
    }
    float l1, u1;
    const bool finite =
        skv::detail::sketch_bounds(qcode.data(), qmeta, code.data() + std::size_t(r) * dim,
                                   meta.data() + std::size_t(r) * skv::detail::sketch_meta_width, dim, l1, u1);
    if (r == 40) { // the infinite value: no finite bound on either path
      CHECK_FALSE(finite);
      CHECK(lo[r] == -std::numeric_limits<float>::infinity());
      CHECK(up[r] == std::numeric_limits<float>::infinity());
      continue;
    }
    REQUIRE(finite);
    const float exact = skv::mean_key_summarizer::score<float>(q.data(), 1, dim, row);
    double dot_codes = 0, excess = 0; // sigma tau I, and how far the score is from it
    for (int d = 0; d < dim; ++d) dot_codes += double(qcode[d]) * (double(code[std::size_t(r) * dim + d]) - 128);
    excess = double(exact) - 0.5 * dot_codes;
    CHECK(excess > 100.0); // the aligned residual really moves the score (0.5 * 0.49 * sum |c_d|)
    CHECK(l1 <= exact);
    CHECK(exact <= u1);
    CHECK(lo[r] <= exact);
    CHECK(exact <= up[r]);
  }
}

TEST_CASE("sketched SentenceKV (lossless and pre-filtered) matches the naive reference") {
  scenario sc;
  sc.lengths = {1500, 700, 90};
  sc.mean_len = 8; // many short sentences: hundreds of segments per pair
  sc.steps = 30;
  {
    using C = lossless_with<float, skv::sketched_mean_key_summarizer>;
    auto o = small_options<C>();
    o.selector.choice.sketch_rows = 0; // the sketched path at every size
    run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
  }
  {
    using C = prefiltered_with<float, skv::sketched_mean_key_summarizer>;
    auto o = small_options<C>();
    o.selector.choice.sketch_rows = 0;
    run_against_reference<C>(o, sc, true, reference_options(o.selector, o.segmenter));
  }
}

//! Prompt and steps with exact ties (repeated sentences), zero keys and, optionally, non-finite values: the
//! sketched cache and the plain one must select the same tokens every step.
template <class T>
void same_selection(bool non_finite, std::uint32_t seed) {
  using Plain = lossless_with<T, skv::mean_key_summarizer>;
  using Sketched = lossless_with<T, skv::sketched_mean_key_summarizer>;
  const int q_heads = 8, kv_heads = 2, dim = 64;
  const std::vector<int> lengths{2400, 1000, 300};
  std::mt19937 rng(seed);
  auto b = ref::make_batch(lengths, q_heads, kv_heads, dim, seed + 100);
  b.ids = text_ids(b.rows(), 10, rng);
  // repeat the first sentence-sized block of keys further on (exact score ties), and zero some keys
  const std::size_t row = std::size_t(kv_heads) * dim;
  for (std::size_t r = 0; r < std::size_t(b.rows()); ++r) {
    if (r >= 600 && r < 1800 && (r / 40) % 3 == 0)
      std::copy_n(b.k.begin() + (r % 40) * row, row, b.k.begin() + r * row);
    if (r % 97 == 5) std::fill_n(b.k.begin() + r * row, row, 0.f);
    if (r % 40 == 0) b.ids[r] = boundary;
  }
  if (non_finite) b.k[std::size_t(1234) * row + 3] = std::numeric_limits<float>::infinity();
  auto [o, so] = paired_options<Plain, Sketched>(160, 0);
  o.check_values = so.check_values = !non_finite; // non-finite keys and queries on purpose
  Plain plain({1, q_heads, kv_heads, dim}, o);
  Sketched sketched({1, q_heads, kv_heads, dim}, so);
  ref::typed_batch<T> tb(b);
  plain.prefill(0, tb.args());
  sketched.prefill(0, tb.args());
  std::uniform_int_distribution<int> tok(2, vocab - 1), coin(0, 5);
  for (int step = 0; step < 25; ++step) {
    auto st = ref::make_step(int(lengths.size()), q_heads, kv_heads, dim, rng);
    for (auto& id : st.ids) id = coin(rng) == 0 ? boundary : tok(rng);
    if (step % 4 == 1) std::fill(st.q.begin(), st.q.begin() + q_heads * dim, 0.f); // a zero query: all tie
    if (non_finite && step == 20) st.q[5] = std::numeric_limits<float>::quiet_NaN();
    ref::typed_step<T> ts(st);
    std::vector<float> out(st.q.size());
    plain.step(0, ts.args(), ref::out_view(out, q_heads, dim));
    sketched.step(0, ts.args(), ref::out_view(out, q_heads, dim));
    const auto a = plain.selection(0), s = sketched.selection(0);
    INFO("step " << step);
    REQUIRE(a.indptr == s.indptr);
    REQUIRE(a.indices == s.indices);
  }
  CHECK(sketched.ledger().fast_bytes > plain.ledger().fast_bytes); // the codes live in the fast tier
}

TEST_CASE_TEMPLATE("sketched selection == full scoring: ties, zero keys and queries", T, float, skv::bfloat16) {
  same_selection<T>(false, 3);
  same_selection<T>(false, 4);
}

TEST_CASE("sketched selection == full scoring with infinite keys and a NaN query") { same_selection<float>(true, 5); }

TEST_CASE("sketch_rows is checked") {
  using C = lossless_with<float, skv::sketched_mean_key_summarizer>;
  auto o = small_options<C>();
  o.selector.choice.sketch_rows = -1;
  try {
    C c({1, 8, 2, 64}, o);
    FAIL("no exception");
  } catch (const skv::invalid_argument& e) {
    CHECK(std::string(e.what()).find("sketch_rows") != std::string::npos);
    CHECK(std::string(e.what()).find("-1") != std::string::npos);
  }
}

} // namespace sketch_test
