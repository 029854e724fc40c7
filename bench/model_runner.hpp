//! @file bench/model_runner.hpp
//! Whole-model decode: one `kv_cache` of `depth` layers over a ragged batch, the chosen layers prefilled and stepped
//! token by token as an engine runs them (layer 0, 1, ... of each decode step, every sequence at once).
//!
//! Every layer gets the same generated prompt (examples/synthetic.hpp) and the same decode tokens, each in its own
//! cache memory: per-layer policies (PyramidKV's budgets, Quest's dense first layers) act as they do in a real model,
//! and each layer's step reads its own tiers, so the memory traffic of a whole model is real. Sequence b of a batch
//! of B holds the first ctx - (ctx / 2) * b / B tokens of the prompt (a ragged batch from ctx down to about ctx / 2).
#pragma once

#include "harness.hpp"

namespace skv_bench {

//! Which layers of a model of `depth` layers are stepped: the middle layer of each of `layers` equal slices
//! (stride / 2, stride / 2 + stride, ...; every layer when layers == depth).
struct model_config {
  std::int64_t ctx;
  int batch;
  int layers; //!< layers stepped
  int depth;  //!< layers of the model (a multiple of `layers`); per-layer policies see their real depth
  int stride() const { return depth / layers; }
  int first() const { return stride() / 2; }
  //! Prompt tokens of sequence `b`.
  std::int64_t length(int b) const { return ctx - (ctx / 2) * b / batch; }
};

//! Copies rows [0, n) of a [*, row] array into rows [at, at + n) of another (either backend).
template <class T>
struct copy_rows {
  const T* from;
  T* to;
  std::int64_t row, at;
  SKV_HOST_DEVICE void operator()(std::int64_t i) const { to[at * row + i] = from[i]; }
};

//! The ragged batch prompt (prefixes of one generated prompt) and a pool of batched decode tokens.
template <class T>
struct batch_inputs {
  skv::model_shape shape;
  std::vector<std::int32_t> ids, indptr;
  skv::fast_vector<T> k, v, q;                 //!< [rows, heads, head_dim], sequences one after another
  std::vector<skv::fast_vector<T>> dk, dv, dq; //!< [pool] decode tokens of the whole batch
  std::vector<std::int32_t> step_ids;

  batch_inputs(const inputs<T>& in, const model_config& c)
      : shape{c.depth, in.shape.q_heads, in.shape.kv_heads, in.shape.head_dim} {
    indptr = {0};
    for (int b = 0; b < c.batch; ++b) indptr.push_back(indptr.back() + std::int32_t(c.length(b)));
    const std::int64_t rows = indptr.back(), kv_row = std::int64_t(shape.num_kv_heads) * shape.head_dim,
                       q_row = std::int64_t(shape.num_q_heads) * shape.head_dim;
    k.resize(std::size_t(rows * kv_row));
    v.resize(k.size());
    q.resize(std::size_t(rows * q_row));
    for (int b = 0; b < c.batch; ++b) {
      const std::int64_t n = c.length(b), at = indptr[b];
      ids.insert(ids.end(), in.ids.begin(), in.ids.begin() + n);
      skv::parallel_for(n * kv_row, copy_rows<T>{skv::raw(in.k), skv::raw(k), kv_row, at});
      skv::parallel_for(n * kv_row, copy_rows<T>{skv::raw(in.v), skv::raw(v), kv_row, at});
      skv::parallel_for(n * q_row, copy_rows<T>{skv::raw(in.q), skv::raw(q), q_row, at});
    }
    for (int j = 0; j < inputs<T>::pool; ++j) { // sequence b's token j is the single-sequence pool's token j + b
      dk.emplace_back(std::size_t(c.batch * kv_row));
      dv.emplace_back(std::size_t(c.batch * kv_row));
      dq.emplace_back(std::size_t(c.batch * q_row));
      for (int b = 0; b < c.batch; ++b) {
        const int from = (j + b) % inputs<T>::pool;
        skv::parallel_for(kv_row, copy_rows<T>{skv::raw(in.dk[from]), skv::raw(dk[j]), kv_row, b});
        skv::parallel_for(kv_row, copy_rows<T>{skv::raw(in.dv[from]), skv::raw(dv[j]), kv_row, b});
        skv::parallel_for(q_row, copy_rows<T>{skv::raw(in.dq[from]), skv::raw(dq[j]), q_row, b});
      }
    }
    step_ids.resize(c.batch);
    device_sync();
  }

  skv::prefill_args<T> prompt() const {
    return skv::make_prefill_args<T>(shape, indptr, ids, skv::raw(k), skv::raw(v), skv::raw(q));
  }
  //! Decode step `i`: sequence b ends a sentence when (i + 7 b) % 24 == 0 (sentences of 24 tokens, their ends
  //! staggered over the batch, so fallback steps of different sequences fall on different steps).
  skv::decode_args<T> token(std::int64_t i) {
    const int j = int(i % inputs<T>::pool);
    for (std::size_t b = 0; b < step_ids.size(); ++b)
      step_ids[b] = (i + 7 * std::int64_t(b)) % 24 == 0 ? synthetic::boundary_id : std::int32_t(1000 + j);
    return skv::make_decode_args<T>(shape, step_ids, skv::raw(dk[j]), skv::raw(dv[j]), skv::raw(dq[j]));
  }
};

//! One preset's cache over a whole model (or an evenly spaced part of it) and a ragged batch.
class model_runner {
public:
  virtual ~model_runner() = default;
  virtual void prefill() = 0;
  //! One decode step: every stepped layer, every sequence. Returns its seconds.
  virtual double step() = 0;
  virtual std::int64_t attended() = 0; //!< tokens the last step attended to, summed over layers, sequences, heads
  virtual skv::memory_ledger ledger() = 0;
};

template <class Cache>
class cache_model_runner final : public model_runner {
  using T = typename Cache::value_type;

public:
  cache_model_runner(const inputs<T>& in, int budget, const model_config& c)
      : c_(c), in_(in, c), cache_(in_.shape, bench_options<Cache>(budget)),
        out_(std::size_t(c.batch) * in.shape.q_heads * in.shape.head_dim) {}

  void prefill() override {
    each_layer([&](int l) { cache_.prefill(l, in_.prompt()); });
  }
  double step() override {
    const auto tok = in_.token(n_++);
    const auto out = skv::nhd(skv::raw(out_), c_.batch, in_.shape.num_q_heads, in_.shape.head_dim);
    const auto t0 = clock::now();
    each_layer([&](int l) { cache_.step(l, tok, out); });
    return seconds_since(t0);
  }
  std::int64_t attended() override {
    std::int64_t n = 0;
    each_layer([&](int l) { n += cache_.selection_nnz(l); });
    return n;
  }
  skv::memory_ledger ledger() override { return cache_.ledger(); }

private:
  template <class F>
  void each_layer(F f) {
    for (int l = c_.first(); l < c_.depth; l += c_.stride()) f(l);
  }

  model_config c_;
  batch_inputs<T> in_;
  Cache cache_;
  skv::fast_vector<float> out_;
  std::int64_t n_ = 0;
};

using model_runner_factory = std::function<std::unique_ptr<model_runner>(const shape_spec&, int, const model_config&)>;

template <class Cache>
model_runner_factory model_factory() {
  using T = typename Cache::value_type;
  return [](const shape_spec& s, int budget, const model_config& c) -> std::unique_ptr<model_runner> {
    const auto in = get_inputs<T>(c.ctx, s); // the longest sequence's prompt; the others are its prefixes
    return std::make_unique<cache_model_runner<Cache>>(*in, budget, c);
  };
}

} // namespace skv_bench
