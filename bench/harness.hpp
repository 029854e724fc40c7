//! @file bench/harness.hpp
//! What every skv-bench benchmark shares: the problem shapes, generated inputs with sentence structure, a
//! type-erased runner around one `kv_cache` preset, and per-stage timing of a decode step.
//!
//! Inputs come from examples/synthetic.hpp (keys cluster by sentence, decode queries ask about planted needle
//! sentences). They live on the fast tier (`skv::fast_vector`), so the same code runs on the CUDA backend.
#pragma once

#include <skv/skv.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "synthetic.hpp"

namespace skv_bench {

//! A model's attention geometry, by name.
struct shape_spec {
  const char* name;
  int q_heads, kv_heads, head_dim;
};
inline constexpr shape_spec llama3_8b{"llama3_8b", 32, 8, 128}; // Llama-3-8B: GQA 4, head_dim 128
inline constexpr shape_spec smollm2{"smollm2", 9, 3, 64};       // SmolLM2-135M: GQA 3, head_dim 64

inline void device_sync() {
#if defined(SKV_BACKEND_CUDA)
  cudaDeviceSynchronize();
#endif
}

using clock = std::chrono::steady_clock;
inline double seconds_since(clock::time_point t0) {
  device_sync();
  return std::chrono::duration<double>(clock::now() - t0).count();
}

//! Counter-based noise: roughly N(0, 1) (Irwin-Hall of 4 uniforms), cheap enough to fill GiB-sized buffers.
template <class T>
struct fill_noise {
  T* x;
  std::uint64_t seed;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const {
    std::uint64_t z = seed + std::uint64_t(i) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const float s = float(z & 0xffff) + float((z >> 16) & 0xffff) + float((z >> 32) & 0xffff) + float(z >> 48);
    x[i] = skv::from_float<T>((s * (1.f / 65536.f) - 2.f) * 1.7320508f);
  }
};

inline std::shared_ptr<void>& held_inputs() {
  static std::shared_ptr<void> p;
  return p;
}

template <class T>
skv::fast_vector<T> upload(const std::vector<float>& x) {
  const std::vector<T> y = synthetic::to<T>(x);
  return skv::fast_vector<T>(y.begin(), y.end());
}

//! One prompt of `tokens` tokens and a pool of decode tokens, on the fast tier, stored as `T`.
template <class T>
struct inputs {
  static constexpr int pool = 32;
  shape_spec shape;
  std::int64_t tokens;
  std::vector<std::int32_t> ids, indptr;
  skv::fast_vector<T> k, v;                    //!< [tokens, kv_heads, head_dim] sentence-clustered keys, noise values
  skv::fast_vector<T> q;                       //!< [tokens, q_heads, head_dim] prompt queries (noise)
  std::vector<skv::fast_vector<T>> dk, dv, dq; //!< [pool] decode tokens; queries point at the needle topic
  std::vector<std::int32_t> step_id;           //!< scratch for decode_args::token_ids

  inputs(synthetic::workload& w, const shape_spec& s) : shape(s), tokens(w.tokens) {
    ids = w.ids;
    indptr = {0, std::int32_t(tokens)};
    k = upload<T>(w.k);
    v = upload<T>(w.v);
    q.resize(std::size_t(tokens) * s.q_heads * s.head_dim);
    skv::parallel_for(std::int64_t(q.size()), fill_noise<T>{skv::raw(q), 0x5eedull + std::uint64_t(tokens)});
    for (int i = 0; i < pool; ++i) {
      std::int32_t id;
      std::vector<float> kq, vq, qq;
      w.decode_token(id, kq, vq, qq, false);
      dk.push_back(upload<T>(kq));
      dv.push_back(upload<T>(vq));
      dq.push_back(upload<T>(qq));
    }
    step_id.resize(1);
  }

  skv::model_shape model() const { return {1, shape.q_heads, shape.kv_heads, shape.head_dim}; }
  skv::prefill_args<T> prompt() const {
    return skv::make_prefill_args<T>(model(), indptr, ids, skv::raw(k), skv::raw(v), skv::raw(q));
  }
  //! Decode token `i` of the stream; a boundary token closes the open sentence.
  skv::decode_args<T> token(std::int64_t i, bool boundary) {
    const int j = int(i % pool);
    step_id[0] = boundary ? synthetic::boundary_id : std::int32_t(1000 + j);
    return skv::make_decode_args<T>(model(), step_id, skv::raw(dk[j]), skv::raw(dv[j]), skv::raw(dq[j]));
  }
};

//! The generated prompt (host, float) of the current (tokens, shape), shared by every storage type.
inline synthetic::workload& host_workload(std::int64_t n, const shape_spec& s) {
  static std::unique_ptr<synthetic::workload> w;
  static std::string key;
  const std::string want = std::string(s.name) + "/" + std::to_string(n);
  if (!w || key != want) {
    w.reset();
    // prompt queries are generated separately (inputs::q): only the last `window` rows feed the policies, so the
    // workload's own queries are made for one head
    w = std::make_unique<synthetic::workload>(
        synthetic::make(n, 1, s.kv_heads, s.head_dim, /*mean_sentence=*/24, /*needles=*/3));
    w->q_heads = s.q_heads; // decode queries: every head of a group points at the needle topic
    key = want;
  }
  return *w;
}

//! The inputs of the current (tokens, shape, type): one set at a time, since a 128K prompt takes GiBs.
template <class T>
std::shared_ptr<inputs<T>> get_inputs(std::int64_t n, const shape_spec& s) {
  static std::weak_ptr<inputs<T>> cached;
  auto p = cached.lock();
  if (p && p->tokens == n && std::string(p->shape.name) == s.name) return p;
  held_inputs().reset(); // the previous set (any type) goes unless a runner still holds it
  p = std::make_shared<inputs<T>>(host_workload(n, s), s);
  cached = p;
  held_inputs() = p;
  return p;
}

//! Seconds spent in each part of one decode step.
struct stage_times {
  double append = 0, select = 0, fetch = 0, attend = 0;
};

//! One cache of one preset over one prompt, driven step by step.
class runner {
public:
  virtual ~runner() = default;
  virtual void prefill() = 0;
  //! One decode step through the public API: `kv_cache::step` (append + select + attend).
  virtual void step(bool boundary) = 0;
  //! The same step, timed per stage through the public API: append, select, fetch, attend.
  virtual void step_parts(bool boundary, stage_times& t) = 0;
  virtual skv::memory_ledger ledger() = 0;
  virtual std::int64_t attended() = 0;     //!< tokens the last step attended to, summed over (sequence, KV head)
  virtual std::int64_t retained() = 0;     //!< tokens held on either tier, summed over KV heads
  virtual bool dense_step() = 0;           //!< the last step attended to every retained token
  virtual std::size_t summary_bytes() = 0; //!< bytes of segment summaries the selector scores
  virtual int kv_bytes_per_element() const = 0;
  bool warm = false; //!< the open sentence holds >= 2 queries: the next step is a steady (non-fallback) step
  //! The stream of the decode calls (CPU backends: an executor, null = the backend's default threads).
  skv::stream_t stream = {};
};

template <class Cache>
typename Cache::options bench_options(int budget) {
  typename Cache::options o;
  if constexpr (requires { o.segmenter.boundaries; }) o.segmenter.boundaries = {synthetic::boundary_id};
  if constexpr (requires { o.selector.budget; })
    if (budget > 0) o.selector.budget = budget;
  o.check_values = false;
  return o;
}

template <class Cache>
class cache_runner final : public runner {
  using T = typename Cache::value_type;

public:
  cache_runner(std::shared_ptr<inputs<T>> in, int budget)
      : in_(std::move(in)), cache_(skv::model_shape{1, in_->shape.q_heads, in_->shape.kv_heads, in_->shape.head_dim},
                                   bench_options<Cache>(budget)),
        out_(std::size_t(in_->shape.q_heads) * in_->shape.head_dim) {}

  void prefill() override {
    cache_.prefill(0, in_->prompt());
    open_ = 0;
    closed_ = false;
    warm = false;
  }
  void step(bool boundary) override {
    cache_.step(0, in_->token(n_++, boundary), out(), stream);
    after_step(boundary);
  }
  void step_parts(bool boundary, stage_times& t) override {
    // kv_cache::step() is these four calls (plus observation, for selectors that learn from attention)
    const auto tok = in_->token(n_++, boundary);
    auto t0 = clock::now();
    cache_.append(0, tok, stream);
    t.append = seconds_since(t0);
    t0 = clock::now();
    cache_.select(0, stream);
    t.select = seconds_since(t0);
    t0 = clock::now();
    cache_.fetch(0, stream);
    t.fetch = seconds_since(t0);
    t0 = clock::now();
    cache_.attend(0, out(), stream);
    t.attend = seconds_since(t0);
    after_step(boundary);
  }
  skv::memory_ledger ledger() override { return cache_.ledger(); }
  std::int64_t attended() override { return cache_.selection_nnz(0); }
  std::int64_t retained() override {
    std::int64_t n = 0;
    for (int h = 0; h < in_->shape.kv_heads; ++h) n += cache_.retained(0, 0, h);
    return n;
  }
  bool dense_step() override { return attended() == retained(); }
  std::size_t summary_bytes() override {
    using Sum = typename Cache::summarizer_type;
    const std::size_t segments = cache_.segment_begins(0, 0).size() * std::size_t(in_->shape.kv_heads);
    if constexpr (skv::sketched_summarizer<Sum>) // the sketches and their meta (the few full summaries left out)
      return segments * (std::size_t(in_->shape.head_dim) + skv::detail::sketch_meta_width * sizeof(float));
    if constexpr (skv::projected_summarizer<Sum>) // int8 projections and their scales (candidates' summaries left out)
      return segments * (std::size_t(in_->shape.head_dim / Sum::projection_divisor) + sizeof(float));
    return segments * std::size_t(Sum::vectors) * std::size_t(in_->shape.head_dim) * sizeof(T);
  }
  int kv_bytes_per_element() const override { return int(sizeof(T)); }

private:
  skv::tensor_view<float> out() { return skv::nhd(skv::raw(out_), 1, in_->shape.q_heads, in_->shape.head_dim); }
  void after_step(bool boundary) {
    // queries in the open sentence (methods.md steps 5-6): the step after a boundary starts a new sentence with one
    // query, which is a fallback step; the next step is steady when the open sentence will hold >= 2 queries
    open_ = (closed_ || open_ == 0) ? 1 : open_ + 1;
    closed_ = boundary;
    warm = !closed_ && open_ >= 1;
  }
  std::shared_ptr<inputs<T>> in_;
  Cache cache_;
  skv::fast_vector<float> out_;
  std::int64_t n_ = 0;
  int open_ = 0;
  bool closed_ = false;
};

//! Builds a runner for (tokens, shape, budget) of one preset and storage type.
using runner_factory = std::function<std::unique_ptr<runner>(std::int64_t, const shape_spec&, int)>;

template <class Cache>
runner_factory factory() {
  using T = typename Cache::value_type;
  return [](std::int64_t n, const shape_spec& s, int budget) -> std::unique_ptr<runner> {
    return std::make_unique<cache_runner<Cache>>(get_inputs<T>(n, s), budget);
  };
}

} // namespace skv_bench
