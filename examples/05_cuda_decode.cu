// The engine's view on a GPU: K/V/Q live in device memory (cudaMalloc), skv's fast tier is device memory and its
// slow tier pinned host memory; each decode step appends the new token, selects sentences, fetches only the
// missing ones over UVA and attends, and the selection is exported as int32 CSR into device buffers that a paged
// attention kernel could consume. Without a GPU it says so and exits 0.
#include <skv/skv.hpp>

#include <cstdio>
#include <cuda_runtime.h>
#include <vector>

#include "synthetic.hpp"

#define CHECK_CUDA(x)                                                                                                  \
  do {                                                                                                                 \
    cudaError_t e = (x);                                                                                               \
    if (e != cudaSuccess) {                                                                                            \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e));                                              \
      return 1;                                                                                                        \
    }                                                                                                                  \
  } while (0)

template <class T>
T* to_device(const std::vector<T>& host) {
  T* d = nullptr;
  if (cudaMalloc(&d, host.size() * sizeof(T)) != cudaSuccess) return nullptr;
  cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("05_cuda_decode: no CUDA device present; nothing to run.\n");
    return 0;
  }
  constexpr int QH = 32, KH = 8, D = 128;
  constexpr std::int64_t N = 32768;
  using T = skv::bfloat16; // layout-compatible with __nv_bfloat16
  auto w = synthetic::make(N, QH, KH, D);
  const std::vector<std::int32_t> indptr = {0, std::int32_t(N)};
  T* k = to_device(synthetic::to<T>(w.k));
  T* v = to_device(synthetic::to<T>(w.v));
  T* q = to_device(synthetic::to<T>(w.q));
  if (!k || !v || !q) return 1;

  skv::sentence_kv_lossless<T>::options o;
  o.segmenter.boundaries = {synthetic::boundary_id};
  skv::sentence_kv_lossless<T> cache({1, QH, KH, D}, o);
  skv::prefill_args<T> a;
  a.indptr = indptr; // host metadata
  a.token_ids = w.ids;
  a.num_rows = N;
  a.k = skv::nhd<const T>(k, KH, D); // device pointers
  a.v = skv::nhd<const T>(v, KH, D);
  a.q = skv::nhd<const T>(q, QH, D);
  a.num_q_heads = QH;
  a.num_kv_heads = KH;
  a.head_dim = D;
  cache.prefill(0, a);
  auto m = cache.ledger();
  std::printf("prefill: %lld tokens; fast tier %.1f MiB, slow tier (pinned) %.1f MiB\n", (long long)N,
              m.fast_bytes / 1048576.0, m.slow_bytes / 1048576.0);

  T *dk, *dv, *dq, *dout;
  std::int32_t *d_indptr, *d_indices;
  CHECK_CUDA(cudaMalloc(&dk, KH * D * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&dv, KH * D * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&dq, QH * D * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&dout, QH * D * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&d_indptr, (KH + 1) * sizeof(std::int32_t)));
  CHECK_CUDA(cudaMalloc(&d_indices, std::size_t(KH) * (N + 64) * sizeof(std::int32_t)));
  for (int step = 0; step < 6; ++step) {
    std::int32_t id;
    std::vector<float> kf, vf, qf;
    w.decode_token(id, kf, vf, qf, step == 3);
    CHECK_CUDA(cudaMemcpy(dk, synthetic::to<T>(kf).data(), KH * D * sizeof(T), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dv, synthetic::to<T>(vf).data(), KH * D * sizeof(T), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dq, synthetic::to<T>(qf).data(), QH * D * sizeof(T), cudaMemcpyHostToDevice));
    skv::decode_args<T> d;
    d.token_ids = std::span<const std::int32_t>(&id, 1);
    d.k = skv::nhd<const T>(dk, KH, D);
    d.v = skv::nhd<const T>(dv, KH, D);
    d.q = skv::nhd<const T>(dq, QH, D);
    d.num_q_heads = QH;
    d.num_kv_heads = KH;
    d.head_dim = D;
    cache.step(0, d, skv::nhd(dout, QH, D));
    cache.export_csr(0, d_indptr, d_indices); // device buffers, engine format
    std::vector<std::int32_t> h_indptr(KH + 1);
    CHECK_CUDA(cudaMemcpy(h_indptr.data(), d_indptr, h_indptr.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost));
    m = cache.ledger();
    std::printf("step %d: %d tokens selected over %d KV heads; fetched %.1f KiB (%lld copied, %lld read in place)\n",
                step, h_indptr[KH], KH, m.moved_to_fast / 1024.0, (long long)cache.offloader(0).last_copied(),
                (long long)cache.offloader(0).last_streamed());
  }
  CHECK_CUDA(cudaDeviceSynchronize());
  std::printf("fast tier %.2f MiB vs %.2f MiB for the whole cache on the GPU\n", m.fast_bytes / 1048576.0,
              double(N) * KH * D * 2 * sizeof(T) / 1048576.0);
  return 0;
}
