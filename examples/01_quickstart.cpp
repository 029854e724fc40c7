// skv in one screen: prefill a small generated batch, decode a few steps with full_kv and streaming_llm, print what
// each selected and how far streaming_llm's attention output is from full attention.
#include <skv/skv.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const skv::model_shape shape{/*num_layers=*/2, /*num_q_heads=*/8, /*num_kv_heads=*/2, /*head_dim=*/64};
  const std::vector<std::int32_t> indptr = {0, 300, 420}; // two prompts: 300 and 120 tokens, packed
  const std::int64_t rows = indptr.back();
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  auto random = [&](std::size_t n) {
    std::vector<float> x(n);
    for (auto& e : x) e = nd(rng);
    return x;
  };
  std::vector<std::int32_t> ids(rows, 42);
  auto k = random(rows * 2 * 64), v = random(rows * 2 * 64), q = random(rows * 8 * 64);

  skv::full_kv<float> full(shape);
  skv::streaming_llm<float>::options so;
  so.selector.budget = 64; // 4 sinks + 60 recent tokens per (sequence, KV head)
  skv::streaming_llm<float> stream(shape, so);

  // packed NHD rows of both prompts; q is optional (no policy here reads prompt queries)
  const auto prompt = skv::make_prefill_args<float>(shape, indptr, ids, k.data(), v.data(), q.data());
  for (int layer = 0; layer < shape.num_layers; ++layer) {
    full.prefill(layer, prompt);
    stream.prefill(layer, prompt);
  }

  std::printf("skv quickstart (backend: %s): 2 sequences (300 and 120 prompt tokens), 8 query / 2 KV heads, "
              "head_dim 64\n\n",
              SKV_BACKEND_NAME);
  for (int step = 0; step < 4; ++step) {
    const std::vector<std::int32_t> new_ids = {7, 7};
    auto sk = random(2 * 2 * 64), sv = random(2 * 2 * 64), sq = random(2 * 8 * 64);
    const auto token = skv::make_decode_args<float>(shape, new_ids, sk.data(), sv.data(), sq.data());
    std::vector<float> out_full(2 * 8 * 64), out_stream(out_full.size());
    for (int layer = 0; layer < shape.num_layers; ++layer) {
      full.step(layer, token, skv::nhd(out_full.data(), 2, 8, 64));
      stream.step(layer, token, skv::nhd(out_stream.data(), 2, 8, 64));
    }
    const auto sf = full.selection(1), ss = stream.selection(1);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < out_full.size(); ++i) {
      num += (out_stream[i] - out_full[i]) * (out_stream[i] - out_full[i]);
      den += out_full[i] * out_full[i];
    }
    std::printf("step %d (layer 1, sequence 0, KV head 0):\n", step);
    std::printf("  full_kv       attends %3d tokens: [0 .. %d]\n", sf.indptr[1] - sf.indptr[0],
                sf.indices[sf.indptr[1] - 1]);
    std::printf("  streaming_llm attends %3d tokens: [0 .. %d] + [%d .. %d]\n", ss.indptr[1] - ss.indptr[0],
                ss.indices[3], ss.indices[4], ss.indices[ss.indptr[1] - 1]);
    std::printf("  streaming_llm output vs full attention: relative L2 error %.3f\n", std::sqrt(num / den));
  }
  const auto mf = full.ledger(), ms = stream.ledger();
  std::printf("\nfast-tier bytes: full_kv %zu, streaming_llm %zu (%.1f%%)\n", mf.fast_bytes, ms.fast_bytes,
              100.0 * double(ms.fast_bytes) / double(mf.fast_bytes));
  return 0;
}
