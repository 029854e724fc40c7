// The generic cache with the two simplest presets, against the double-precision dense reference.
#include <doctest/doctest.h>

#include "reference.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace kv_cache_test {

namespace {

template <class T>
double tolerance() {
  // float storage: only float accumulation order differs from the double reference. half/bfloat16: K/V are
  // rounded to 11 / 8 significant bits when stored, which moves the output by up to ~2^-8 relative.
  return std::is_same_v<T, float> ? 1e-5 : 1e-2;
}

struct case_shape {
  int q_heads, kv_heads, dim;
  bool hnd;
};

//! Prefill, then decode steps; after each step the selection must be what `expected(seq, length)` says and the
//! attention output must match the reference over that selection.
template <class Cache, class T, class Expected>
void run_decode(Cache& cache, const ref::batch& b, int steps, Expected expected, std::uint32_t seed) {
  const int L = cache.shape().num_layers, B = int(b.indptr.size()) - 1;
  ref::typed_batch<T> tb(b);
  for (int l = 0; l < L; ++l) cache.prefill(l, tb.args());
  ref::history hist{b.kv_heads, b.dim, {}, {}, {}};
  hist.add_prompt(b);
  std::mt19937 rng(seed);
  for (int s = 0; s < steps; ++s) {
    const auto st = ref::make_step(B, b.q_heads, b.kv_heads, b.dim, rng);
    hist.add_step(st);
    ref::typed_step<T> ts(st);
    for (int l = 0; l < L; ++l) {
      std::vector<float> out(st.q.size());
      cache.step(l, ts.args(), ref::out_view(out, b.q_heads, b.dim));
      const auto sel = cache.selection(l);
      for (int seq = 0; seq < B; ++seq)
        for (int h = 0; h < b.kv_heads; ++h) {
          const int p = seq * b.kv_heads + h;
          std::vector<std::int32_t> got(sel.indices.begin() + sel.indptr[p], sel.indices.begin() + sel.indptr[p + 1]);
          REQUIRE(got == expected(seq, cache.length(l, seq)));
        }
      // the reference sees the queries as the cache stored them (rounded to T)
      std::vector<float> q(st.q.size());
      for (std::size_t i = 0; i < q.size(); ++i) q[i] = skv::to_float(ts.q[i]);
      const auto want = ref::attend_all(hist, q, b.q_heads, sel, cache.softmax_scale());
      CHECK(ref::rel_l2(out, want) < tolerance<T>());
    }
  }
}

} // namespace

TEST_CASE_TEMPLATE("full_kv matches dense attention: GQA, ragged batch, NHD and HND, head_dim 64/128/256", T, float,
                   skv::half, skv::bfloat16) {
  // groups of 1 to 10 query heads: the CPU kernels block heads by 8 and specialise each count of heads in a block
  for (auto cs : {case_shape{8, 2, 64, false}, case_shape{4, 4, 128, true}, case_shape{6, 2, 256, false},
                  case_shape{12, 3, 64, true}, case_shape{20, 2, 64, false}, case_shape{14, 2, 128, true},
                  case_shape{5, 1, 64, false}}) {
    CAPTURE(cs.q_heads);
    CAPTURE(cs.dim);
    const auto b = ref::make_batch({37, 300, 1}, cs.q_heads, cs.kv_heads, cs.dim, 7, cs.hnd);
    skv::full_kv<T> cache({2, cs.q_heads, cs.kv_heads, cs.dim});
    run_decode<skv::full_kv<T>, T>(
        cache, b, 4, [](int, std::int64_t n) { return ref::iota(std::int32_t(n)); }, 11);
  }
}

TEST_CASE("full_kv: long context splits attention across chunks and still matches") {
  const auto b = ref::make_batch({5000, 700}, 8, 2, 128, 3);
  skv::full_kv<float> cache({1, 8, 2, 128});
  run_decode<skv::full_kv<float>, float>(
      cache, b, 2, [](int, std::int64_t n) { return ref::iota(std::int32_t(n)); }, 5);
}

TEST_CASE_TEMPLATE("streaming_llm keeps exactly sink + recent and matches the reference over them", T, float,
                   skv::bfloat16) {
  typename skv::streaming_llm<T>::options o;
  o.selector.budget = 48;
  o.selector.retention.sink = 4;
  const auto b = ref::make_batch({100, 30, 47}, 8, 2, 64, 9);
  skv::streaming_llm<T> cache({2, 8, 2, 64}, o);
  auto expected = [](int, std::int64_t n) {
    std::vector<std::int32_t> e;
    for (std::int32_t i = 0; i < std::min<std::int64_t>(4, n); ++i) e.push_back(i);
    for (std::int64_t i = std::max<std::int64_t>(4, n - 44); i < n; ++i) e.push_back(std::int32_t(i));
    return e;
  };
  run_decode<skv::streaming_llm<T>, T>(cache, b, 6, expected, 13);
  for (int seq = 0; seq < 3; ++seq) CHECK(cache.retained(0, seq, 1) <= 48);
}

TEST_CASE("streaming_llm frees evicted memory: the fast tier stays bounded while full_kv grows") {
  const auto b = ref::make_batch({4000}, 4, 2, 64, 21);
  skv::streaming_llm<float>::options o;
  o.selector.budget = 256;
  skv::streaming_llm<float> stream({1, 4, 2, 64}, o);
  skv::full_kv<float> full({1, 4, 2, 64});
  ref::typed_batch<float> tb(b);
  stream.prefill(0, tb.args());
  full.prefill(0, tb.args());
  const auto after_prefill = stream.ledger().fast_bytes;
  std::mt19937 rng(1);
  std::vector<float> out(4 * 64);
  for (int s = 0; s < 300; ++s) {
    const auto st = ref::make_step(1, 4, 2, 64, rng);
    ref::typed_step<float> ts(st);
    stream.step(0, ts.args(), ref::out_view(out, 4, 64));
    full.step(0, ts.args(), ref::out_view(out, 4, 64));
  }
  const auto m_stream = stream.ledger(), m_full = full.ledger();
  CHECK(m_stream.fast_bytes <= after_prefill + 64 * 1024);
  const std::size_t full_kv_bytes = std::size_t(4300) * 2 * 2 * 64 * sizeof(float);
  CHECK(m_full.fast_bytes >= full_kv_bytes);
  CHECK(m_stream.fast_bytes * 8 < m_full.fast_bytes);
  CHECK(m_stream.slow_bytes == 0);
  CHECK(m_stream.moved_to_fast == 0);
}

TEST_CASE("selection exports: CSR and -1-padded tables agree") {
  const auto b = ref::make_batch({50, 20}, 4, 2, 64, 2);
  skv::streaming_llm<float>::options o;
  o.selector.budget = 32;
  skv::streaming_llm<float> cache({1, 4, 2, 64}, o);
  ref::typed_batch<float> tb(b);
  cache.prefill(0, tb.args());
  std::mt19937 rng(3);
  const auto st = ref::make_step(2, 4, 2, 64, rng);
  ref::typed_step<float> ts(st);
  cache.append(0, ts.args());
  cache.select(0);
  const auto csr = cache.selection(0);
  REQUIRE(csr.indptr.size() == 5);
  const int width = cache.selection_max(0) + 3;
  std::vector<std::int32_t> table(4 * width), lengths(4);
  cache.export_padded(0, table.data(), width, lengths.data());
  for (int p = 0; p < 4; ++p) {
    REQUIRE(lengths[p] == csr.indptr[p + 1] - csr.indptr[p]);
    for (int i = 0; i < width; ++i)
      CHECK(table[p * width + i] == (i < lengths[p] ? csr.indices[csr.indptr[p] + i] : -1));
  }
  CHECK(cache.selection_nnz(0) == std::int64_t(csr.indices.size()));
  CHECK_THROWS_WITH_AS(cache.export_padded(0, table.data(), 2, lengths.data()),
                       doctest::Contains("argument 'width' is 2"), skv::invalid_argument);
}

} // namespace kv_cache_test
