// The engine's view on a GPU: K/V/Q live in device memory (cudaMalloc), skv's fast tier is device memory and its
// slow tier pinned host memory. The cache is reserved once (no allocation on the decode path), every call runs on
// the engine's stream without waiting on the host, each decode step appends the new token, selects sentences,
// fetches only the missing ones over UVA and attends, and the selection is exported as int32 CSR into device
// buffers that a paged attention kernel could consume. Without a GPU it says so and exits 0.
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
  const skv::model_shape shape{1, QH, KH, D};
  skv::sentence_kv_lossless<T> cache(shape, o);
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cache.reserve(/*max_batch=*/1, /*max_tokens=*/N + 64);
  // host metadata (indptr, ids), device tensors
  cache.prefill(0, skv::make_prefill_args<T>(shape, indptr, w.ids, k, v, q), stream);
  auto m = cache.ledger(stream);
  std::printf("prefill: %lld tokens; fast tier %.1f MiB, slow tier (pinned) %.1f MiB\n", (long long)N,
              m.fast_bytes / 1048576.0, m.slow_bytes / 1048576.0);

  T *dk, *dv, *dq, *dout;
  std::int32_t *d_indptr, *d_indices;
  CHECK_CUDA(cudaMalloc(&dk, KH * D * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&dv, KH * D * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&dq, QH * D * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&dout, QH * D * sizeof(T)));
  CHECK_CUDA(cudaMalloc(&d_indptr, (KH + 1) * sizeof(std::int32_t)));
  const std::int64_t capacity = std::int64_t(KH) * (N + 64); // >= selection_bound() on every step
  CHECK_CUDA(cudaMalloc(&d_indices, std::size_t(capacity) * sizeof(std::int32_t)));
  for (int step = 0; step < 6; ++step) {
    std::int32_t id;
    std::vector<float> kf, vf, qf;
    w.decode_token(id, kf, vf, qf, step == 3);
    CHECK_CUDA(cudaMemcpy(dk, synthetic::to<T>(kf).data(), KH * D * sizeof(T), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dv, synthetic::to<T>(vf).data(), KH * D * sizeof(T), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dq, synthetic::to<T>(qf).data(), QH * D * sizeof(T), cudaMemcpyHostToDevice));
    const auto d = skv::make_decode_args<T>(shape, std::span(&id, 1), dk, dv, dq);
    cache.step(0, d, skv::nhd(dout, 1, QH, D), stream);         // no host wait inside
    cache.export_csr(0, d_indptr, d_indices, capacity, stream); // device buffers, engine format
    std::vector<std::int32_t> h_indptr(KH + 1);
    CHECK_CUDA(cudaMemcpyAsync(h_indptr.data(), d_indptr, h_indptr.size() * sizeof(std::int32_t),
                               cudaMemcpyDeviceToHost, stream));
    CHECK_CUDA(cudaStreamSynchronize(stream)); // the engine's own sync, e.g. before sampling
    m = cache.ledger(stream);
    std::printf("step %d: %d tokens selected over %d KV heads; fetched %.1f KiB (%lld copied, %lld read in place)\n",
                step, h_indptr[KH], KH, m.moved_to_fast / 1024.0, (long long)cache.offloader(0).last_copied(stream),
                (long long)cache.offloader(0).last_streamed(stream));
  }
  CHECK_CUDA(cudaDeviceSynchronize());
  std::printf("fast tier %.2f MiB vs %.2f MiB for the whole cache on the GPU\n", m.fast_bytes / 1048576.0,
              double(N) * KH * D * 2 * sizeof(T) / 1048576.0);
  return 0;
}
