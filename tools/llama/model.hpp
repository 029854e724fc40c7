#pragma once
//! \file model.hpp
//! Minimal CPU forward pass for Llama-architecture GGUF models (batch size 1).
//!
//! Weights are dequantized to float once at load so prompt processing runs as
//! OpenBLAS GEMMs. Attention is delegated to an attention_backend so callers can
//! plug in their own KV-cache policy.

#include "gguf.hpp"

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

namespace skv::llama {

//! Architecture hyper-parameters read from `llama.*` / `tokenizer.ggml.*` metadata.
struct hparams {
    int32_t n_vocab = 0;
    int32_t n_ctx_train = 0;  //!< llama.context_length
    int32_t n_layer = 0;      //!< llama.block_count
    int32_t n_embd = 0;       //!< llama.embedding_length
    int32_t n_ff = 0;         //!< llama.feed_forward_length
    int32_t n_head = 0;       //!< llama.attention.head_count
    int32_t n_head_kv = 0;    //!< llama.attention.head_count_kv
    int32_t head_dim = 0;     //!< n_embd / n_head
    int32_t n_rot = 0;        //!< llama.rope.dimension_count (defaults to head_dim)
    float rms_eps = 1e-5f;    //!< llama.attention.layer_norm_rms_epsilon
    float rope_freq_base = 10000.0f; //!< llama.rope.freq_base
    int32_t bos_id = -1;      //!< tokenizer.ggml.bos_token_id (-1 if absent)
    int32_t eos_id = -1;      //!< tokenizer.ggml.eos_token_id (-1 if absent)
};

//! Per-layer attention over a single sequence. The model calls reset() at the
//! start of every prefill, then for each layer in order either prefill() (whole
//! prompt) or decode() (one token). Layouts are row-major:
//! q/out `[n, n_head, head_dim]`, k/v `[n, n_head_kv, head_dim]`; q and k are
//! already RoPE-rotated. Query head h reads KV head h / (n_head / n_head_kv).
class attention_backend {
public:
    virtual ~attention_backend() = default;
    //! Store k/v of `n_tokens` prompt tokens and write exact causal attention of
    //! each prompt query over all keys up to and including its own position.
    virtual void prefill(int layer, std::span<const int32_t> ids, const float* q, const float* k,
                         const float* v, int n_tokens, float* out) = 0;
    //! Store k/v of one generated token and write its attention output.
    virtual void decode(int layer, int32_t id, const float* q, const float* k, const float* v,
                        float* out) = 0;
    //! Forget all cached keys and values.
    virtual void reset() = 0;
};

//! Exact causal attention with a dense float KV cache; the reference backend.
class dense_attention_backend final : public attention_backend {
public:
    explicit dense_attention_backend(const hparams& hp);

    void prefill(int layer, std::span<const int32_t> ids, const float* q, const float* k,
                 const float* v, int n_tokens, float* out) override;
    void decode(int layer, int32_t id, const float* q, const float* k, const float* v,
                float* out) override;
    void reset() override;

    //! Tokens cached for `layer`.
    int n_cached(int layer) const;

private:
    void append(int layer, const float* k, const float* v, int n);
    void attend(int layer, const float* q, int n_new, float* out);

    int n_layer_, n_head_, n_head_kv_, head_dim_;
    std::vector<std::vector<float>> k_, v_; // per layer: [pos, n_head_kv, head_dim]
    std::vector<float> q_buf_, s_buf_, o_buf_; // scratch for grouped GEMMs
};

//! A loaded Llama model: hyper-parameters plus float weights.
class model {
public:
    //! Load and validate a GGUF file. Throws std::runtime_error naming the file for
    //! any gguf_file::open error, `general.architecture` other than "llama", tensor
    //! types outside F32/F16/Q4_1/Q8_0/Q6_K, and missing or mis-shaped tensors.
    //! Prints the tensor-type histogram and hyper-parameters to `log` unless null.
    static model load(const std::filesystem::path& path, std::ostream* log = nullptr);

    model(model&&) noexcept;
    model& operator=(model&&) noexcept;
    ~model();

    const hparams& params() const noexcept { return hp_; }
    //! The parsed file (metadata for the tokenizer, histogram, ...).
    const gguf_file& file() const noexcept { return file_; }

    //! Start a new sequence (resets `backend`) and run the prompt. Returns the last
    //! token's logits `[n_vocab]`, or all tokens' logits `[n, n_vocab]` if `all_logits`.
    std::vector<float> prefill(std::span<const int32_t> tokens, attention_backend& backend,
                               bool all_logits = false);
    //! Append one token to the current sequence and return its logits `[n_vocab]`.
    std::vector<float> decode(int32_t token, attention_backend& backend);
    //! One decode step of `tokens.size()` sequences that share the current position (n_past()): row r appends
    //! tokens[r] to backends[r]'s sequence. The weights are read once for all rows (a GEMM instead of GEMVs), which
    //! is how tools/eval decodes many cache policies from one prefill in lockstep. Returns logits `[rows, n_vocab]`
    //! and advances n_past() by one. Throws std::invalid_argument if the sizes differ, a backend is null or there is
    //! no row.
    std::vector<float> decode_batch(std::span<const int32_t> tokens, std::span<attention_backend* const> backends);

    //! Tokens processed in the current sequence.
    int n_past() const noexcept { return n_past_; }
    //! Rewind the current sequence to its first `n` tokens (0 <= n <= n_past()): the next decode() runs at
    //! position `n`. The caller rewinds or replaces the backend's cache to match; this lets several KV caches
    //! decode from one prefill (tools/eval). Throws std::out_of_range otherwise.
    void rewind(int n);

private:
    struct layer_weights;

    explicit model(gguf_file f);
    enum class pass { prefill, decode, decode_batch };
    // decode_batch: every row at position n_past_, row r attending through backends[r].
    std::vector<float> forward(std::span<const int32_t> tokens, std::span<attention_backend* const> backends,
                               bool all_logits, pass mode);

    gguf_file file_;
    hparams hp_;
    std::vector<float> tok_embd_;  // [n_vocab, n_embd]
    std::vector<float> out_norm_;  // [n_embd]
    std::vector<float> output_;    // [n_vocab, n_embd]; empty when tied to tok_embd_
    std::vector<layer_weights> layers_;
    std::vector<double> inv_freq_; // RoPE frequency per rotated pair
    int n_past_ = 0;
};

//! Mean negative log-likelihood of tokens[1..] under `logits` `[n, n_vocab]`
//! (row i predicts token i+1); perplexity is exp() of it.
double mean_nll(std::span<const float> logits, std::span<const int32_t> tokens, int n_vocab);

//! Index of the largest logit.
int32_t argmax(std::span<const float> logits);

} // namespace skv::llama
