// Built against the installed package: one prefill + decode step with full_kv, checked against a direct computation.
#include <skv/skv.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const int n = 3;
  std::vector<float> K(n * 64, 0.f), V(n * 64, 0.f);
  for (int t = 0; t < n; ++t) {
    K[t * 64] = float(t);
    V[t * 64] = float(10 * t);
  }
  const skv::model_shape shape{1, 1, 1, 64};
  skv::full_kv<float> cache(shape);
  const std::vector<std::int32_t> indptr = {0, n}, ids = {1, 2, 3};
  cache.prefill(0, skv::make_prefill_args<float>(shape, indptr, ids, K.data(), V.data()));
  std::vector<float> kq(64, 0.f), vq(64, 0.f), qq(64, 0.f), out(64);
  kq[0] = 3;
  vq[0] = 30;
  qq[0] = 8; // logits (scaled by 1/8): 0, 1, 2, 3
  const std::vector<std::int32_t> id = {4};
  cache.step(0, skv::make_decode_args<float>(shape, id, kq.data(), vq.data(), qq.data()),
             skv::nhd(out.data(), 1, 1, 64));
  double num = 0, den = 0;
  for (int t = 0; t < 4; ++t) {
    num += std::exp(double(t)) * 10 * t;
    den += std::exp(double(t));
  }
  const double want = num / den;
  std::printf("skv consumer: attention output %.6f, expected %.6f\n", out[0], want);
  return std::fabs(out[0] - want) < 1e-4 * want ? 0 : 1;
}
