#pragma once
//! \file skv_backend.hpp
//! An llama::attention_backend whose decode-time attention goes through an skv cache (any preset).
//!
//! Prefill: the engine does its own prompt attention -- exact causal attention with the runner's dense code --
//! and then hands the layer's post-RoPE K, V and Q to `cache.prefill`. Decode: `cache.step` (append, select,
//! attend over the selection). Batch size 1.

#include "llama/model.hpp"
#include "registry.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace skv::eval {

//! A prompt's per-layer post-RoPE Q, K, V, recorded once so that further caches can be prefilled from it
//! without running the model again (the prefill forward pass does not depend on the cache policy).
struct prefill_record {
    std::vector<std::int32_t> ids;
    int n_tokens = 0;
    std::vector<std::vector<float>> q, k, v; //!< per layer: [n, n_head, head_dim], [n, n_head_kv, head_dim] x2
};

//! Attention-recall accumulator: per layer, the sum and count of per-(step, KV head) recall values.
struct recall_stats {
    std::vector<double> sum;
    std::vector<std::int64_t> count;
    double mean(int layer) const { return count[layer] ? sum[layer] / double(count[layer]) : 0.0; }
    double mean() const;
};

//! Recall of one selection for one KV head: the exact attention mass (softmax of `scale` * q . k over all
//! `n_keys` keys, averaged over the group's `group` query heads) that the selected positions cover, divided by the
//! mass of the exact top-k keys, k = number of selected positions. 1 when the selection is the exact top-k.
//! @param q      [group, head_dim] the group's queries
//! @param keys   [n_keys] rows, `key_stride` floats apart, head_dim contiguous
//! @param sel    selected positions in [0, n_keys)
double attention_recall(const float* q, int group, int head_dim, const float* keys, std::int64_t key_stride,
                        std::int64_t n_keys, std::span<const std::int32_t> sel, float scale);

class skv_attention_backend final : public llama::attention_backend {
public:
    struct options {
        bool track_recall = false;        //!< keep a full key copy and measure attention recall at each decode step
        prefill_record* record = nullptr; //!< if set, prefill() records the prompt's Q/K/V here
    };

    skv_attention_backend(const llama::hparams& hp, std::unique_ptr<cache_handle> cache, options o);

    void prefill(int layer, std::span<const std::int32_t> ids, const float* q, const float* k, const float* v,
                 int n_tokens, float* out) override;
    void decode(int layer, std::int32_t id, const float* q, const float* k, const float* v, float* out) override;
    void reset() override;

    //! Prefills every layer of the cache from the first `n_tokens` of `r` (all of it when -1), as prefill() would
    //! have, for decoding after model::rewind(). Throws std::invalid_argument if the record holds fewer tokens.
    void prefill_from(const prefill_record& r, int n_tokens = -1);
    //! Seconds spent in the cache's decode steps (cache.step) since the last reset or prefill_from.
    double step_seconds() const { return step_seconds_; }
    //! Decode steps since the last reset or prefill_from.
    std::int64_t steps() const { return steps_; }

    cache_handle& cache() { return *cache_; }
    const recall_stats& recall() const { return recall_; }

private:
    void clear_tracking();
    void store_prompt(int layer, std::span<const std::int32_t> ids, const float* q, const float* k, const float* v,
                      int n_tokens);

    llama::hparams hp_;
    std::unique_ptr<cache_handle> cache_;
    options opts_;
    std::vector<std::vector<float>> keys_; //!< per layer [n, n_head_kv, head_dim] (track_recall only)
    recall_stats recall_;
    double step_seconds_ = 0;
    std::int64_t steps_ = 0;
};

} // namespace skv::eval
