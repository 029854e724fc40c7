// The projected pre-screen (detail/projection.hpp, projected_mean_key_summarizer): the basis spans the summaries'
// dominant subspace; at full rank the pre-screened selection is the exact one; on keys with a low-rank structure it
// recalls the exact selection; pairs without a usable basis score exactly; bad options are refused.
#include <doctest/doctest.h>

#include <skv/skv.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <type_traits>

#include "sentence_harness.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace prescreen_test {

using namespace sentence_harness;

template <class T, class Sum>
using lossless_with =
    skv::kv_cache<skv::sentence_segmenter, Sum, skv::composed_selector<skv::keep_all, skv::segment_topk<>>,
                  skv::host_offloader, T>;

static_assert(skv::projected_summarizer<skv::projected_mean_key_summarizer<>>);
static_assert(skv::projected_summarizer<skv::projected_mean_key_summarizer<1>>);
static_assert(!skv::projected_summarizer<skv::mean_key_summarizer>);
static_assert(!skv::projected_summarizer<skv::sketched_mean_key_summarizer>);

//! `n` orthonormal random directions of `dim` (Gram-Schmidt of Gaussian vectors).
std::vector<std::vector<float>> random_directions(int n, int dim, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  std::vector<std::vector<float>> u(n, std::vector<float>(dim));
  for (int i = 0; i < n; ++i) {
    for (auto& x : u[i]) x = nd(rng);
    for (int j = 0; j < i; ++j) {
      double dot = 0;
      for (int d = 0; d < dim; ++d) dot += u[i][d] * u[j][d];
      for (int d = 0; d < dim; ++d) u[i][d] -= float(dot) * u[j][d];
    }
    double s = 0;
    for (float x : u[i]) s += x * x;
    for (auto& x : u[i]) x /= float(std::sqrt(s));
  }
  return u;
}

TEST_CASE("dominant_subspace: an orthonormal basis of the rows' dominant subspace") {
  const int dim = 64, rank = 8;
  std::mt19937 rng(7);
  const auto u = random_directions(rank, dim, rng);
  std::normal_distribution<float> nd;
  const int n = 3000; // more than basis_sample: the strided sample
  std::vector<float> rows(std::size_t(n) * dim);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < rank; ++j) {
      const float c = nd(rng) * float(rank - j); // distinct variances: a well-defined subspace
      for (int d = 0; d < dim; ++d) rows[std::size_t(i) * dim + d] += c * u[j][d];
    }
  for (auto& x : rows) x += 0.01f * nd(rng);
  rows[5] = std::numeric_limits<float>::quiet_NaN(); // a non-finite row is skipped
  std::vector<float> basis(std::size_t(rank) * dim);
  const int used = skv::detail::dominant_subspace(rows.data(), n, dim, rank, basis.data());
  CHECK(used == (n + 1) / 2 - 1); // stride 2 over 3000 rows, one of them non-finite
  for (int a = 0; a < rank; ++a)
    for (int b = 0; b < rank; ++b) {
      double dot = 0;
      for (int d = 0; d < dim; ++d) dot += double(basis[a * dim + d]) * basis[b * dim + d];
      CHECK(dot == doctest::Approx(a == b ? 1.0 : 0.0).epsilon(0).scale(1).epsilon(1e-5));
    }
  // every generating direction lies in the span: |B u|^2 = 1 (noise 0.01 against variances >= 1)
  for (int j = 0; j < rank; ++j) {
    double in = 0;
    for (int a = 0; a < rank; ++a) {
      double dot = 0;
      for (int d = 0; d < dim; ++d) dot += double(basis[a * dim + d]) * u[j][d];
      in += dot * dot;
    }
    CHECK(in > 0.999);
  }
}

TEST_CASE("dominant_subspace of no usable row, or of fewer rows than the rank, is still orthonormal") {
  const int dim = 64, rank = 16;
  std::vector<float> rows(std::size_t(4) * dim, 0.f), basis(std::size_t(rank) * dim);
  CHECK(skv::detail::dominant_subspace(rows.data(), 4, dim, rank, basis.data()) == 0);
  rows[3] = 1.f; // one non-zero row: M has rank 1
  CHECK(skv::detail::dominant_subspace(rows.data(), 4, dim, rank, basis.data()) == 1);
  for (int a = 0; a < rank; ++a)
    for (int b = 0; b < rank; ++b) {
      double dot = 0;
      for (int d = 0; d < dim; ++d) dot += double(basis[a * dim + d]) * basis[b * dim + d];
      CHECK(std::abs(dot - (a == b ? 1.0 : 0.0)) < 1e-5);
    }
}

//! Keys with a low-rank structure: each sentence draws a topic from `topics` directions of a `subspace`-dimensional
//! subspace, and its tokens are that topic plus isotropic noise of relative size `noise`; queries are topics too.
struct topic_data {
  int dim, subspace;
  float noise;
  std::vector<std::vector<float>> topics;
  std::mt19937 rng;
  topic_data(int dim_, int subspace_, int n_topics, float noise_, std::uint32_t seed)
      : dim(dim_), subspace(subspace_), noise(noise_), rng(seed) {
    const auto u = random_directions(subspace, dim, rng);
    std::normal_distribution<float> nd;
    for (int t = 0; t < n_topics; ++t) {
      std::vector<float> v(dim, 0.f);
      for (int j = 0; j < subspace; ++j) {
        const float c = nd(rng);
        for (int d = 0; d < dim; ++d) v[d] += c * u[j][d];
      }
      topics.push_back(v);
    }
  }
  void fill(float* x, int topic) {
    std::normal_distribution<float> nd;
    const float scale = noise / std::sqrt(float(dim)) * std::sqrt(float(subspace));
    for (int d = 0; d < dim; ++d) x[d] = topics[topic][d] + scale * nd(rng);
  }
};

//! The selected store indices of every pair (host), for recall.
std::vector<std::set<std::int32_t>> selected_sets(const skv::selection_csr& c) {
  std::vector<std::set<std::int32_t>> s(c.indptr.size() - 1);
  for (std::size_t p = 0; p + 1 < c.indptr.size(); ++p) s[p].insert(c.indices.begin() + c.indptr[p], c.indices.begin() + c.indptr[p + 1]);
  return s;
}

struct recall_stats {
  double recall = 0; //!< the exact selection's tokens that the pre-screened one holds, over all steps and pairs
  int steps_identical = 0, steps = 0;
};

//! Prefill a prompt of topic sentences in two caches (exact: mean key; `Pre`: projected), decode `steps` topic
//! queries, and compare the selections. `topic_keys` false: isotropic random keys (no low-rank structure).
template <class T, class Pre>
recall_stats compare(int prompt, int steps, float prescreen, std::uint32_t seed, bool topic_keys = true,
                     int sketch_rows = 0, int zero_query_every = 0) {
  using Exact = lossless_with<T, skv::mean_key_summarizer>;
  using Screened = lossless_with<T, Pre>;
  const int q_heads = 4, kv_heads = 2, dim = 64;
  topic_data data(dim, 6, 40, 0.5f, seed);
  std::mt19937 rng(seed + 1);
  auto b = ref::make_batch({prompt}, q_heads, kv_heads, dim, seed + 2);
  b.ids = text_ids(b.rows(), 12, rng);
  std::uniform_int_distribution<int> pick(0, int(data.topics.size()) - 1);
  if (topic_keys) {
    int topic = pick(rng);
    for (std::int64_t r = 0; r < b.rows(); ++r) {
      if (r > 0 && b.ids[r - 1] == boundary) topic = pick(rng);
      for (int h = 0; h < kv_heads; ++h) data.fill(&b.k[(std::size_t(r) * kv_heads + h) * dim], (topic + h) % 40);
    }
  }
  auto [o, so] = paired_options<Exact, Screened>(160, sketch_rows);
  so.selector.choice.prescreen = prescreen;
  o.selector.choice.fallback = so.selector.choice.fallback = false; // every step ranks the segments
  Exact exact({1, q_heads, kv_heads, dim}, o);
  Screened screened({1, q_heads, kv_heads, dim}, so);
  ref::typed_batch<T> tb(b);
  exact.prefill(0, tb.args());
  screened.prefill(0, tb.args());
  recall_stats r;
  std::int64_t hit = 0, total = 0;
  std::uniform_int_distribution<int> tok(2, vocab - 1), coin(0, 5);
  for (int step = 0; step < steps; ++step) {
    auto st = ref::make_step(1, q_heads, kv_heads, dim, rng);
    st.ids[0] = coin(rng) == 0 ? boundary : tok(rng);
    if (topic_keys) {
      for (int h = 0; h < kv_heads; ++h) data.fill(&st.k[std::size_t(h) * dim], pick(rng));
      const int asked = pick(rng);
      for (int qh = 0; qh < q_heads; ++qh) data.fill(&st.q[std::size_t(qh) * dim], (asked + qh / (q_heads / kv_heads)) % 40);
    }
    if (zero_query_every > 0 && step % zero_query_every == 1) std::fill(st.q.begin(), st.q.end(), 0.f); // all tie
    ref::typed_step<T> ts(st);
    std::vector<float> out(st.q.size());
    exact.step(0, ts.args(), ref::out_view(out, q_heads, dim));
    screened.step(0, ts.args(), ref::out_view(out, q_heads, dim));
    const auto a = exact.selection(0), s = screened.selection(0);
    const auto sa = selected_sets(a), ss = selected_sets(s);
    for (std::size_t p = 0; p < sa.size(); ++p) {
      for (auto i : sa[p]) hit += ss[p].count(i);
      total += std::int64_t(sa[p].size());
      CHECK(ss[p].size() == sa[p].size()); // both fill the budget
    }
    r.steps_identical += a.indices == s.indices && a.indptr == s.indptr;
    ++r.steps;
  }
  r.recall = double(hit) / double(total);
  return r;
}

TEST_CASE("full-rank projection: the pre-screened selection is the exact one") {
  // rank = head_dim: the projected score is the exact one rotated (equal up to float rounding), and the candidates
  // fill twice the budget, so every segment of the exact selection is among them
  const auto r = compare<float, skv::projected_mean_key_summarizer<1>>(6000, 30, 2.f, 11, true, 0, 5);
  CHECK(r.steps_identical == r.steps); // every fifth query zero: all scores tie, the cut falls among equals
  const auto i = compare<float, skv::projected_mean_key_summarizer<1>>(6000, 30, 2.f, 12, false);
  CHECK(i.steps_identical == i.steps);
}

TEST_CASE_TEMPLATE("rank head_dim / 4 on keys of a 6-dimensional topic subspace: high recall", T, float,
                   skv::bfloat16) {
  const auto r = compare<T, skv::projected_mean_key_summarizer<4>>(3000, 40, 2.f, 21);
  MESSAGE("recall " << r.recall << ", identical steps " << r.steps_identical << " / " << r.steps);
  CHECK(r.recall > 0.97);
  // a prescreen that covers every token is the exact selection, whatever the projection
  const auto all = compare<T, skv::projected_mean_key_summarizer<4>>(3000, 20, 1e6f, 22, false);
  CHECK(all.steps_identical == all.steps);
}

TEST_CASE("rank head_dim / 4 on isotropic keys: the pre-screen is approximate and its recall shows it") {
  // no low-rank structure: 16 of 64 directions hold about a quarter of each score's variance, so the projected
  // ranking misses part of the exact selection -- the case the docs warn about (this test fails if the projection
  // silently degenerates to the exact scan)
  const auto r = compare<float, skv::projected_mean_key_summarizer<4>>(3000, 40, 2.f, 31, false);
  MESSAGE("isotropic recall " << r.recall);
  CHECK(r.recall < 0.97);
  CHECK(r.recall > 0.3);
}

TEST_CASE("a pair whose prompt gave too few summaries for a basis scores exactly") {
  // 300 prompt tokens, ~25 sentences < 4 x rank (64): the pre-screen never applies, even past sketch_rows
  const auto r = compare<float, skv::projected_mean_key_summarizer<4>>(300, 60, 2.f, 41, false);
  CHECK(r.steps_identical == r.steps);
}

TEST_CASE("below sketch_rows the selection is exact") {
  const auto r = compare<float, skv::projected_mean_key_summarizer<4>>(3000, 20, 2.f, 51, false, 100000);
  CHECK(r.steps_identical == r.steps);
}

TEST_CASE("prescreen and the projection's divisor are checked") {
  using C = lossless_with<float, skv::projected_mean_key_summarizer<4>>;
  for (float bad : {0.5f, 0.f, -1.f, std::numeric_limits<float>::quiet_NaN()}) {
    auto o = small_options<C>();
    o.selector.choice.prescreen = bad;
    try {
      C c({1, 8, 2, 64}, o);
      FAIL("no exception for prescreen " << bad);
    } catch (const skv::invalid_argument& e) {
      CHECK(std::string(e.what()).find("prescreen") != std::string::npos);
      CHECK(std::string(e.what()).find("[1, 1e6]") != std::string::npos);
    }
  }
  using C3 = lossless_with<float, skv::projected_mean_key_summarizer<3>>;
  try {
    C3 c({1, 8, 2, 64}, small_options<C3>());
    FAIL("no exception for head_dim 64 with divisor 3");
  } catch (const skv::invalid_argument& e) {
    const std::string w = e.what();
    CHECK(w.find("head_dim") != std::string::npos);
    CHECK(w.find("64") != std::string::npos);
    CHECK(w.find("projection_divisor (3)") != std::string::npos);
  }
}

TEST_CASE_TEMPLATE("score_projections: every SIMD path scores as the scalar loop, bit for bit", R,
                   std::integral_constant<int, 16>, std::integral_constant<int, 32>, std::integral_constant<int, 48>,
                   std::integral_constant<int, 64>, std::integral_constant<int, 128>) {
  // Pairs with row counts that leave remainders after 16- and 8-row blocks and span more than one work item; codes
  // over their whole range, [-127, 127] (`project_summary` clamps there: the AVX2 path's 16-bit pair sums and the
  // VNNI path's c + 128 offset rely on it); empty segments score -inf.
  constexpr int rank = R::value;
  using scorer = skv::detail::score_projections<rank>;
  const std::vector<std::int32_t> rows{1, 15, 17, 40, 300, 529};
  const int pairs = int(rows.size());
  std::vector<std::int64_t> seg_off(pairs + 1, 0);
  for (int p = 0; p < pairs; ++p) seg_off[p + 1] = seg_off[p] + rows[p];
  const std::int64_t total = seg_off[pairs];
  std::mt19937 rng(rank);
  std::uniform_int_distribution<int> byte(-127, 127), small(0, 3);
  std::uniform_real_distribution<float> sc(1e-3f, 2.f);
  std::vector<std::int8_t> qcode(std::size_t(pairs) * rank), code(std::size_t(total) * rank);
  for (auto& c : qcode) c = std::int8_t(byte(rng));
  for (auto& c : code) c = std::int8_t(byte(rng));
  for (int d = 0; d < rank; ++d) code[d] = qcode[d] = -127; // the largest dot
  std::vector<float> qscale(pairs), scale(total), out(total, 0.f);
  for (auto& x : qscale) x = sc(rng);
  for (auto& x : scale) x = sc(rng);
  std::vector<std::int32_t> count(total);
  for (auto& c : count) c = small(rng); // a quarter empty
  std::int64_t blocks = 0;
  for (const auto r : rows) blocks = std::max<std::int64_t>(blocks, (r + scorer::block - 1) / scorer::block);
  const scorer f{qcode.data(), qscale.data(), code.data(), scale.data(), seg_off.data(),
                 rows.data(),  count.data(),  out.data(),  blocks};
  for (std::int64_t item = 0; item < pairs * blocks; ++item) f(item);
  for (int p = 0; p < pairs; ++p)
    for (std::int64_t row = seg_off[p]; row < seg_off[p + 1]; ++row) {
      std::int32_t dot = 0;
      for (int d = 0; d < rank; ++d) dot += std::int32_t(qcode[p * rank + d]) * std::int32_t(code[row * rank + d]);
      const float want = count[row] > 0 ? float(dot) * scale[row] * qscale[p] : -INFINITY;
      INFO("rank ", rank, ", pair ", p, ", row ", row - seg_off[p]);
      CHECK(std::memcmp(&out[row], &want, sizeof(float)) == 0);
    }
}

TEST_CASE("the projections and bases live in the fast tier") {
  using Plain = lossless_with<skv::bfloat16, skv::mean_key_summarizer>;
  using Pre = lossless_with<skv::bfloat16, skv::projected_mean_key_summarizer<4>>;
  std::mt19937 rng(3);
  auto b = ref::make_batch({2000}, 4, 2, 64, 3);
  b.ids = text_ids(b.rows(), 12, rng);
  ref::typed_batch<skv::bfloat16> tb(b);
  Plain plain({1, 4, 2, 64}, small_options<Plain>());
  Pre pre({1, 4, 2, 64}, small_options<Pre>());
  plain.prefill(0, tb.args());
  pre.prefill(0, tb.args());
  // at least: 16 int8 codes and a float scale per segment, and a 16 x 64 float basis per pair
  const std::size_t segments = plain.segment_begins(0, 0).size() * 2;
  CHECK(pre.ledger().fast_bytes >= plain.ledger().fast_bytes + segments * (16 + 4) + 2 * 16 * 64 * 4);
}

} // namespace prescreen_test
