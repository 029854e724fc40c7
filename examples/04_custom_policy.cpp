// Writing a policy: a summarizer of our own (04_custom_policy.hpp, under 60 lines) dropped into SentenceKV in place
// of the mean key, everything else unchanged. The workload hides each needle in ONE salient token (a key of larger
// norm) of a long sentence whose other tokens are about something else, so the mean key of a needle sentence barely
// points at the needle; its largest-norm key does. Printed: how many needle tokens each composition attends, and what
// the extra summary vector costs on the fast tier.
#include "04_custom_policy.hpp"

#include <skv/skv.hpp>

#include <cstdio>
#include <vector>

#include "synthetic.hpp"

namespace {

using T = skv::bfloat16;
constexpr int QH = 8, KH = 2, D = 128;
constexpr std::int64_t N = 8192;

//! The SentenceKV composition with summarizer `Sum` (every prompt token kept on the slow tier).
template <class Sum>
using sentence_kv_with = skv::kv_cache<skv::sentence_segmenter, Sum,
                                       skv::composed_selector<skv::keep_all, skv::segment_topk<>>, // top sentences
                                       skv::host_offloader, T>;

//! Needle tokens attended (over KV heads and steps) and fast-tier MiB, for one composition.
template <class Cache>
void run(const char* name, synthetic::workload w, const std::vector<std::int32_t>& needle_tokens) {
  typename Cache::options o;
  o.segmenter.boundaries = {synthetic::boundary_id};
  o.selector.budget = 256;
  Cache cache({1, QH, KH, D}, o);
  const auto k = synthetic::to<T>(w.k), v = synthetic::to<T>(w.v), q = synthetic::to<T>(w.q);
  const std::vector<std::int32_t> indptr = {0, std::int32_t(N)};
  cache.prefill(0, skv::make_prefill_args<T>(cache.shape(), indptr, w.ids, k.data(), v.data(), q.data()));
  std::int64_t hits = 0, total = 0;
  std::vector<float> out(QH * D);
  for (int step = 0; step < 16; ++step) {
    std::int32_t id;
    std::vector<float> kf, vf, qf;
    w.decode_token(id, kf, vf, qf, /*ends_sentence=*/false);
    const auto kt = synthetic::to<T>(kf), vt = synthetic::to<T>(vf), qt = synthetic::to<T>(qf);
    cache.step(0, skv::make_decode_args<T>(cache.shape(), std::span(&id, 1), kt.data(), vt.data(), qt.data()),
               skv::nhd(out.data(), 1, QH, D));
    if (step == 0) continue; // the first step attends to everything (fallback)
    const auto sel = cache.selection(0);
    for (int p = 0; p < KH; ++p)
      for (auto t : needle_tokens) {
        hits += std::binary_search(sel.indices.begin() + sel.indptr[p], sel.indices.begin() + sel.indptr[p + 1], t);
        ++total;
      }
  }
  std::printf("  %-38s needle tokens attended %3lld / %3lld   fast tier %.2f MiB\n", name, (long long)hits,
              (long long)total, double(cache.ledger().fast_bytes) / (1 << 20));
}

} // namespace

int main() {
  auto w = synthetic::make(N, QH, KH, D, /*mean_sentence=*/40, /*needles=*/4);
  // keep the needle topic on one salient token per needle sentence; the others get the sentence's own topic
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<std::int32_t> needle_tokens;
  for (int s : w.needles) {
    std::vector<std::int64_t> tok;
    for (std::int64_t t = 0; t < N; ++t)
      if (w.sentence_of[t] == s) tok.push_back(t);
    const std::int64_t keep = tok[tok.size() / 2];
    needle_tokens.push_back(std::int32_t(keep));
    std::vector<float> topic(std::size_t(KH) * D);
    for (auto& x : topic) x = nd(rng);
    for (int h = 0; h < KH; ++h) synthetic::normalize(&topic[std::size_t(h) * D], D);
    for (auto t : tok)
      for (int h = 0; h < KH; ++h)
        for (int d = 0; d < D; ++d) {
          const float* dir = t == keep ? &w.needle_dir[std::size_t(h) * D] : &topic[std::size_t(h) * D];
          w.k[(std::size_t(t) * KH + h) * D + d] = (t == keep ? 2.f : 1.2f) * std::sqrt(float(D)) * dir[d] + nd(rng);
        }
  }
  std::printf("SentenceKV with a user-written summarizer (backend %s): %lld tokens, %zu needles hidden in one token "
              "of a long sentence each, τ = 256, 15 steady steps\n",
              SKV_BACKEND_NAME, (long long)N, needle_tokens.size());
  run<sentence_kv_with<skv::mean_key_summarizer>>("mean key (sentence_kv_lossless)", w, needle_tokens);
  run<sentence_kv_with<my_policies::mean_and_peak_summarizer>>("mean + peak key (04_custom_policy.hpp)", w,
                                                               needle_tokens);
  return 0;
}
