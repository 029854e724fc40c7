// Public headers compile in any order: here a segmenter (which brings <skv/error.hpp>) before the cache. Before
// error.hpp's helpers moved into the backend namespace, this order failed to compile (skv-trace, CI of stop 15).
#include <skv/segmenter/sentence_segmenter.hpp>
#include <doctest/doctest.h>

#include <skv/kv_cache.hpp>
#include <skv/presets.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

TEST_CASE("headers included in another order still build a working cache") {
  const skv::model_shape shape{1, 2, 1, 64};
  skv::sentence_kv<float>::options o;
  o.segmenter.boundaries = {1};
  skv::sentence_kv<float> cache(shape, o);
  const int n = 40;
  std::vector<float> k(n * 64), v(n * 64), q(n * 2 * 64);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = v[i] = std::sin(0.1f * float(i));
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::cos(0.1f * float(i));
  std::vector<std::int32_t> ids(n, 5), indptr{0, n};
  ids[9] = ids[19] = 1;
  cache.prefill(0, skv::make_prefill_args<float>(shape, indptr, ids, k.data(), v.data(), q.data()));
  const std::vector<std::int32_t> next{7};
  std::vector<float> out(2 * 64, 0.0f);
  cache.step(0, skv::make_decode_args<float>(shape, next, k.data(), v.data(), q.data()),
             skv::nhd(out.data(), 1, 2, 64));
  CHECK(cache.length(0, 0) == n + 1);
  CHECK(std::isfinite(out[0]));
  CHECK_THROWS_WITH_AS(skv::sentence_kv<float>(skv::model_shape{0, 2, 1, 64}, o), doctest::Contains("num_layers"),
                       skv::invalid_argument);
}
