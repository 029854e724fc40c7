// Ablation table: twelve compositions of the four slots on one generated workload (16K tokens, three planted needle
// sentences that the decode queries ask about), all at τ = 1024 tokens per (sequence, KV head). For each: the
// attention error against full_kv, the share of needle tokens attended, fast/slow-tier bytes, bytes fetched per
// step and the time of a decode step (one layer, this machine; a rough figure — skv-bench measures properly).
#include <skv/skv.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "synthetic.hpp"

namespace {

constexpr int QH = 8, KH = 2, D = 128, STEPS = 24;
constexpr std::int64_t N = 16384;
using T = skv::bfloat16;

struct row {
  std::string name, parts;
  double err = 0, needle = 0, fast_mib = 0, slow_mib = 0, moved_kib = 0, ms = 0;
};

template <class Cache, class Setup>
row run(const char* name, const char* parts, Setup setup, const std::vector<std::vector<float>>* reference,
        std::vector<std::vector<float>>* outputs) {
  auto w = synthetic::make(N, QH, KH, D, 24, 3);
  typename Cache::options o;
  setup(o);
  Cache cache({1, QH, KH, D}, o);
  const auto k = synthetic::to<T>(w.k), v = synthetic::to<T>(w.v), q = synthetic::to<T>(w.q);
  const std::vector<std::int32_t> indptr = {0, std::int32_t(N)};
  cache.prefill(0, skv::make_prefill_args<T>(cache.shape(), indptr, w.ids, k.data(), v.data(), q.data()));
  cache.ledger(); // reset the moved counters: count decode only
  std::vector<std::int32_t> needle_pos;
  for (std::int64_t t = 0; t < N; ++t)
    if (std::find(w.needles.begin(), w.needles.end(), w.sentence_of[t]) != w.needles.end())
      needle_pos.push_back(std::int32_t(t));
  row r{name, parts};
  double seconds = 0;
  for (int step = 0; step < STEPS; ++step) {
    std::int32_t id;
    std::vector<float> kf, vf, qf;
    w.decode_token(id, kf, vf, qf, step % 12 == 11);
    const auto kt = synthetic::to<T>(kf), vt = synthetic::to<T>(vf), qt = synthetic::to<T>(qf);
    const auto d = skv::make_decode_args<T>(cache.shape(), std::span(&id, 1), kt.data(), vt.data(), qt.data());
    std::vector<float> out(QH * D);
    const auto t0 = std::chrono::steady_clock::now();
    cache.step(0, d, skv::nhd(out.data(), 1, QH, D));
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (outputs) outputs->push_back(out);
    if (reference) {
      const auto& ref = (*reference)[step];
      double num = 0, den = 0;
      for (int i = 0; i < QH * D; ++i) {
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
      }
      r.err += std::sqrt(num / den) / STEPS;
    }
    const auto sel = cache.selection(0);
    std::int64_t hit = 0;
    for (int p = 0; p < KH; ++p)
      for (auto t : needle_pos)
        hit += std::binary_search(sel.indices.begin() + sel.indptr[p], sel.indices.begin() + sel.indptr[p + 1], t);
    r.needle += double(hit) / double(needle_pos.size() * KH) / STEPS;
  }
  const auto m = cache.ledger();
  r.fast_mib = double(m.fast_bytes) / (1 << 20);
  r.slow_mib = double(m.slow_bytes) / (1 << 20);
  r.moved_kib = double(m.moved_to_fast) / 1024 / STEPS;
  r.ms = 1e3 * seconds / STEPS;
  return r;
}

template <class O>
void budget(O& o) {
  if constexpr (requires { o.selector.budget; }) o.selector.budget = 1024;
}
template <class O>
void sentences(O& o) {
  budget(o);
  if constexpr (requires { o.segmenter.boundaries; }) o.segmenter.boundaries = {synthetic::boundary_id};
}

} // namespace

int main() {
  std::vector<std::vector<float>> ref;
  std::vector<row> rows;
  auto plain = [](auto& o) { budget(o); };
  auto sent = [](auto& o) { sentences(o); };
  rows.push_back(run<skv::full_kv<T>>("full_kv", "token/none/all/device", plain, nullptr, &ref));
  rows.back().err = 0;
  rows.push_back(run<skv::streaming_llm<T>>("streaming_llm", "token/none/sink+recent/device", plain, &ref, nullptr));
  rows.push_back(run<skv::snap_kv<T>>("snap_kv", "token/none/window top-k/device", plain, &ref, nullptr));
  rows.push_back(
      run<skv::pyramid_kv<T>>("pyramid_kv", "token/none/window top-k (1 layer)/device", plain, &ref, nullptr));
  rows.push_back(run<skv::h2o<T>>("h2o", "token/none/heavy hitters/device", plain, &ref, nullptr));
  rows.push_back(run<skv::chunk_kv<T>>("chunk_kv", "chunk10/none/window top chunks/device", plain, &ref, nullptr));
  // one layer here: Quest's dense first two layers would make it full attention
  auto quest_sparse = [](auto& o) {
    budget(o);
    o.selector.choice.dense_layers = 0;
  };
  rows.push_back(run<skv::quest<T>>("quest", "page16/minmax/top pages/device", quest_sparse, &ref, nullptr));
  rows.push_back(run<skv::sentence_kv<T>>("sentence_kv", "sentence/mean/semantic+prefilter/host", sent, &ref, nullptr));
  rows.push_back(
      run<skv::sentence_kv_lossless<T>>("sentence_kv_lossless", "sentence/mean/semantic/host", sent, &ref, nullptr));
  rows.push_back(run<skv::sentence_kv_paper<T>>(
      "sentence_kv_paper", "sentence/mean/semantic, no sink/recent/fallback/host", sent, &ref, nullptr));
  // one type changed per row: the slots (and the selector's two parts) are independent
  using top_sentences = skv::composed_selector<skv::keep_all, skv::segment_topk<>>;
  using prefiltered_top_sentences =
      skv::composed_selector<skv::keep_window_top<skv::sentence_kv_prefilter>, skv::segment_topk<>>;
  using quest_bounds_over_sentences =
      skv::kv_cache<skv::sentence_segmenter, skv::minmax_key_summarizer, top_sentences, skv::host_offloader, T>;
  rows.push_back(
      run<quest_bounds_over_sentences>("sentence+minmax", "sentence/minmax/semantic/host", sent, &ref, nullptr));
  using semantic_over_chunks =
      skv::kv_cache<skv::fixed_segmenter<10>, skv::mean_key_summarizer, top_sentences, skv::host_offloader, T>;
  rows.push_back(run<semantic_over_chunks>("chunk10+semantic", "chunk10/mean/semantic/host", sent, &ref, nullptr));
  using sentence_evicting = skv::kv_cache<skv::sentence_segmenter, skv::mean_key_summarizer, prefiltered_top_sentences,
                                          skv::device_offloader, T>;
  rows.push_back(
      run<sentence_evicting>("sentence_kv+evict", "sentence/mean/semantic+prefilter/device", sent, &ref, nullptr));
  using window_over_sentences =
      skv::kv_cache<skv::sentence_segmenter, skv::no_summarizer,
                    skv::composed_selector<skv::keep_window_top<skv::chunk_kv_window>, skv::attend_all>,
                    skv::device_offloader, T>;
  rows.push_back(
      run<window_over_sentences>("sentence+window", "sentence/none/window top sentences/device", sent, &ref, nullptr));

  std::printf("skv ablation: %lld-token context, 3 needle sentences, %d decode steps, τ = 1024, %d q / %d KV heads, "
              "head_dim %d, bfloat16, backend %s\n\n",
              (long long)N, STEPS, QH, KH, D, SKV_BACKEND_NAME);
  std::printf("%-22s %-46s %9s %8s %9s %9s %11s %8s\n", "composition", "segmenter/summarizer/selector/offloader",
              "rel.err", "needle", "fast MiB", "slow MiB", "KiB/step", "ms/step");
  for (const auto& r : rows)
    std::printf("%-22s %-46s %9.4f %7.0f%% %9.2f %9.2f %11.1f %8.2f\n", r.name.c_str(), r.parts.c_str(), r.err,
                100 * r.needle, r.fast_mib, r.slow_mib, r.moved_kib, r.ms);
  std::printf("\nrel.err: relative L2 distance of the attention output from full_kv's, mean over steps. needle: share "
              "of needle tokens in the attended set. KiB/step: slow -> fast bytes per step (incl. in-place reads).\n");
  return 0;
}
