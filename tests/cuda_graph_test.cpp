// CUDA only: a decode step is captured in a CUDA graph and replayed. Capture (cudaStreamCaptureModeGlobal) fails
// on any allocation or host synchronization inside step(), so a successful capture is itself the check that the
// decode path issues only stream-ordered work; the replayed graph must then compute what eager calls compute.
// Compiled into the CUDA test binary in CI; run when a device is lent.
#include <doctest/doctest.h>

#include "reference.hpp"

#if defined(SKV_BACKEND_CUDA)
#  include <cuda_runtime.h>

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace cuda_graph_test {

constexpr int L = 2, QH = 8, KH = 2, D = 64;

template <class T>
struct device_buffer {
  T* p = nullptr;
  explicit device_buffer(const std::vector<T>& h) {
    REQUIRE(cudaMalloc(&p, h.size() * sizeof(T)) == cudaSuccess);
    REQUIRE(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  ~device_buffer() { cudaFree(p); }
};

std::vector<float> download(const float* d, std::size_t n) {
  std::vector<float> h(n);
  REQUIRE(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  return h;
}

//! Runs `steps` decode steps of `Cache` twice, eagerly and as one captured-and-launched graph per step (all layers),
//! then replays one captured select + attend; outputs and selections must agree exactly.
template <class Cache>
void eager_vs_graph(int steps) {
  const skv::model_shape shape{L, QH, KH, D};
  const auto b = ref::make_batch({260, 90}, QH, KH, D, 3, false, 40);
  device_buffer<float> k(b.k), v(b.v), q(b.q);
  typename Cache::options o;
  if constexpr (requires { o.segmenter.boundaries; }) o.segmenter.boundaries = {1};
  if constexpr (requires { o.selector.budget; }) o.selector.budget = 96;
  o.check_values = false;
  Cache eager(shape, o), graphed(shape, o);
  cudaStream_t s;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  for (Cache* c : {&eager, &graphed}) {
    c->reserve(2, 260 + steps + 8);
    for (int l = 0; l < L; ++l) c->prefill(l, skv::make_prefill_args<float>(shape, b.indptr, b.ids, k.p, v.p, q.p), s);
  }
  std::vector<float> zeros(2 * QH * D, 0.f);
  device_buffer<float> out_eager(zeros), out_graph(zeros);
  std::mt19937 rng(4);
  for (int step = 0; step < steps; ++step) {
    auto st = ref::make_step(2, QH, KH, D, rng, 40);
    for (auto& id : st.ids) id = id % 5 == 0 ? 1 : id;
    device_buffer<float> dk(st.k), dv(st.v), dq(st.q);
    const auto args = skv::make_decode_args<float>(shape, st.ids, dk.p, dv.p, dq.p);
    for (int l = 0; l < L; ++l) eager.step(l, args, skv::nhd(out_eager.p, 2, QH, D), s);
    cudaGraph_t graph;
    REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    for (int l = 0; l < L; ++l) graphed.step(l, args, skv::nhd(out_graph.p, 2, QH, D), s);
    REQUIRE(cudaStreamEndCapture(s, &graph) == cudaSuccess);
    cudaGraphExec_t exec;
    REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    REQUIRE(cudaGraphLaunch(exec, s) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(download(out_graph.p, zeros.size()) == download(out_eager.p, zeros.size()));
    for (int l = 0; l < L; ++l) {
      const auto a = eager.selection(l, s), g = graphed.selection(l, s);
      CHECK(a.indptr == g.indptr);
      CHECK(a.indices == g.indices);
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  // replay: one captured select + attend launched three times reads the same state and writes the same output
  cudaGraph_t graph;
  REQUIRE(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  graphed.select(L - 1, s);
  graphed.attend(L - 1, skv::nhd(out_graph.p, 2, QH, D), s);
  REQUIRE(cudaStreamEndCapture(s, &graph) == cudaSuccess);
  cudaGraphExec_t exec;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  for (int r = 0; r < 3; ++r) {
    REQUIRE(cudaGraphLaunch(exec, s) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(download(out_graph.p, zeros.size()) == download(out_eager.p, zeros.size()));
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
}

TEST_CASE("CUDA graphs: decode steps captured and launched equal eager steps; a captured select + attend replays") {
  eager_vs_graph<skv::full_kv<float>>(6);
  eager_vs_graph<skv::sentence_kv_lossless<float>>(12);
  eager_vs_graph<skv::streaming_llm<float>>(6);
  eager_vs_graph<skv::h2o<float>>(6);
}

} // namespace cuda_graph_test
#endif
