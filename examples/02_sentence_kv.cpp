// SentenceKV on a generated long context with three planted "needle" sentences that the decode queries ask about:
// which sentences each step selects, what the fast tier holds compared with full_kv, what each step fetches from
// the slow tier, and how close the attention output stays to full attention.
#include <skv/skv.hpp>

#include <cmath>
#include <cstdio>
#include <set>
#include <vector>

#include "synthetic.hpp"

int main() {
  constexpr int QH = 8, KH = 2, D = 128;
  constexpr std::int64_t N = 16384;
  auto w = synthetic::make(N, QH, KH, D, /*mean_sentence=*/24, /*needles=*/3);
  const skv::model_shape shape{1, QH, KH, D};
  using T = skv::bfloat16;
  const auto k = synthetic::to<T>(w.k), v = synthetic::to<T>(w.v), q = synthetic::to<T>(w.q);
  const std::vector<std::int32_t> indptr = {0, std::int32_t(N)};

  skv::sentence_kv_lossless<T>::options so; // official defaults: τ = 1024, sink 32, recent 32, fallback 1
  so.segmenter.boundaries = {synthetic::boundary_id};
  skv::sentence_kv_lossless<T> cache(shape, so);
  skv::full_kv<T> full(shape);

  const auto prompt = skv::make_prefill_args<T>(shape, indptr, w.ids, k.data(), v.data(), q.data());
  cache.prefill(0, prompt);
  full.prefill(0, prompt);
  const auto m0 = cache.ledger();
  std::printf("SentenceKV (lossless: every prompt token on the slow tier), backend %s\n", SKV_BACKEND_NAME);
  std::printf("context %lld tokens in %zu sentences, needles = sentences %d, %d, %d; τ = %d, sink %d, recent %d\n",
              (long long)N, cache.segment_begins(0, 0).size(), w.needles[0], w.needles[1], w.needles[2],
              so.selector.budget, so.selector.choice.sink, so.selector.choice.recent);
  std::printf("prefill moved %.1f MiB to the slow tier\n\n", double(m0.moved_to_slow) / (1 << 20));

  std::vector<float> out(QH * D), out_full(QH * D);
  const int steps = 8;
  for (int step = 0; step < steps; ++step) {
    std::int32_t id;
    std::vector<float> kf, vf, qf;
    w.decode_token(id, kf, vf, qf, /*ends_sentence=*/step == 4);
    const auto kt = synthetic::to<T>(kf), vt = synthetic::to<T>(vf), qt = synthetic::to<T>(qf);
    const auto tok = skv::make_decode_args<T>(shape, std::span(&id, 1), kt.data(), vt.data(), qt.data());
    cache.step(0, tok, skv::nhd(out.data(), 1, QH, D));
    full.step(0, tok, skv::nhd(out_full.data(), 1, QH, D));
    const auto m = cache.ledger();
    const auto sel = cache.selection(0);
    double num = 0, den = 0;
    for (int i = 0; i < QH * D; ++i) {
      num += (out[i] - out_full[i]) * (out[i] - out_full[i]);
      den += out_full[i] * out_full[i];
    }
    std::set<int> sentences;
    const std::int64_t len = cache.length(0, 0);
    for (int i = sel.indptr[0]; i < sel.indptr[1]; ++i) {
      const std::int32_t pos = sel.indices[i];
      if (pos >= so.selector.choice.sink && pos < len - so.selector.choice.recent && pos < N)
        sentences.insert(w.sentence_of[pos]);
    }
    std::printf("step %d: head 0 attends %d tokens%s", step, sel.indptr[1] - sel.indptr[0],
                sentences.empty() ? " (fallback: the open sentence has <= 1 query, whole cache)\n" : "; sentences");
    int shown = 0, needles_found = 0;
    for (int s : sentences) {
      const bool needle = std::find(w.needles.begin(), w.needles.end(), s) != w.needles.end();
      needles_found += needle;
      if (shown++ < 10) std::printf(" %d%s", s, needle ? "*" : "");
    }
    if (!sentences.empty()) std::printf("%s (%d of 3 needles)\n", sentences.size() > 10 ? " ..." : "", needles_found);
    std::printf("        fetched %7.1f KiB from the slow tier (%lld tokens copied, %lld read in place); "
                "attention vs full_kv: rel. L2 %.4f\n",
                double(m.moved_to_fast) / 1024, (long long)cache.offloader(0).last_copied(),
                (long long)cache.offloader(0).last_streamed(), std::sqrt(num / den));
  }
  const auto mc = cache.ledger(), mf = full.ledger();
  std::printf("\nfast tier: sentence_kv_lossless %.2f MiB, full_kv %.2f MiB (%.1f%%); slow tier %.2f MiB\n",
              double(mc.fast_bytes) / (1 << 20), double(mf.fast_bytes) / (1 << 20),
              100.0 * double(mc.fast_bytes) / double(mf.fast_bytes), double(mc.slow_bytes) / (1 << 20));
  return 0;
}
