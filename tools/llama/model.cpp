#include "model.hpp"
#include "vec_math.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <stdexcept>

namespace skv::llama {

namespace {

[[noreturn]] void fail(const gguf_file& f, const std::string& what) {
    throw std::runtime_error("model: " + f.path().string() + ": " + what);
}

// y[n, out] = x[n, in] * W[out, in]^T + beta * y. W is a GGUF weight in ggml
// order (shape {in, out}), i.e. row-major [out][in].
void matmul(const float* x, int n, int in, const float* w, int out, float* y, float beta) {
    if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, w, in, x, 1, beta, y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, beta, y, out);
    }
}

void rms_norm(const float* x, const float* w, float* y, int n_rows, int dim, float eps) {
    for (int r = 0; r < n_rows; ++r) {
        const float* xr = x + static_cast<std::size_t>(r) * dim;
        float* yr = y + static_cast<std::size_t>(r) * dim;
        double ss = 0.0; // double: the mean of squares is the one long reduction here
        for (int i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
        const auto scale = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
        for (int i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
    }
}

// RoPE on ADJACENT pairs (x[2i], x[2i+1]): llama.cpp's "normal" mode. GGUF
// converters permute the Q/K weight rows so this equals HF's rotate_half form.
void rope(float* x, int n_tok, int n_heads, int head_dim, int n_rot, const float* cos_t, const float* sin_t) {
    const int half = n_rot / 2;
    for (int t = 0; t < n_tok; ++t) {
        const float* c = cos_t + static_cast<std::size_t>(t) * half;
        const float* s = sin_t + static_cast<std::size_t>(t) * half;
        for (int h = 0; h < n_heads; ++h) {
            float* v = x + (static_cast<std::size_t>(t) * n_heads + h) * head_dim;
            for (int i = 0; i < half; ++i) {
                const float x0 = v[2 * i], x1 = v[2 * i + 1];
                v[2 * i] = x0 * c[i] - x1 * s[i];
                v[2 * i + 1] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

void swiglu(float* gate, const float* up, std::size_t n) {
#pragma omp simd
    for (std::size_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + detail::fast_exp(-g)) * up[i];
    }
}

} // namespace

// ---------------------------------------------------------------------------
// dense_attention_backend

dense_attention_backend::dense_attention_backend(const hparams& hp)
    : n_layer_(hp.n_layer), n_head_(hp.n_head), n_head_kv_(hp.n_head_kv), head_dim_(hp.head_dim),
      k_(static_cast<std::size_t>(hp.n_layer)), v_(static_cast<std::size_t>(hp.n_layer)) {}

void dense_attention_backend::reset() {
    for (auto& k : k_) k.clear();
    for (auto& v : v_) v.clear();
}

int dense_attention_backend::n_cached(int layer) const {
    return static_cast<int>(k_.at(static_cast<std::size_t>(layer)).size() /
                            (static_cast<std::size_t>(n_head_kv_) * head_dim_));
}

void dense_attention_backend::append(int layer, const float* k, const float* v, int n) {
    const std::size_t count = static_cast<std::size_t>(n) * n_head_kv_ * head_dim_;
    auto& kc = k_.at(static_cast<std::size_t>(layer));
    auto& vc = v_.at(static_cast<std::size_t>(layer));
    kc.insert(kc.end(), k, k + count);
    vc.insert(vc.end(), v, v + count);
}

void dense_attention_backend::prefill(int layer, std::span<const int32_t>, const float* q, const float* k,
                                      const float* v, int n_tokens, float* out) {
    append(layer, k, v, n_tokens);
    attend(layer, q, n_tokens, out);
}

void dense_attention_backend::decode(int layer, int32_t, const float* q, const float* k, const float* v,
                                     float* out) {
    append(layer, k, v, 1);
    attend(layer, q, 1, out);
}

// Causal attention of the last n_new cached positions' queries. Queries are
// processed in blocks; the heads sharing one KV head are stacked into a single
// GEMM (rows = heads_per_group * block) so BLAS sees larger matrices, and each
// block only multiplies against the keys it can see.
void dense_attention_backend::attend(int layer, const float* q, int n_new, float* out) {
    const auto& kc = k_[static_cast<std::size_t>(layer)];
    const auto& vc = v_[static_cast<std::size_t>(layer)];
    const int n_total = n_cached(layer);
    const int n_prev = n_total - n_new;
    const int hd = head_dim_;
    const int group = n_head_ / n_head_kv_;
    const int q_stride = n_head_ * hd, kv_stride = n_head_kv_ * hd;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int block = std::min(n_new, 128);

    const auto rows_max = static_cast<std::size_t>(group) * block;
    q_buf_.resize(rows_max * hd);
    o_buf_.resize(rows_max * hd);
    s_buf_.resize(rows_max * static_cast<std::size_t>(n_total));

    for (int q0 = 0; q0 < n_new; q0 += block) {
        const int bm = std::min(block, n_new - q0);
        const int n_keys = n_prev + q0 + bm; // keys visible to the block's last query
        const int rows = group * bm;
        for (int g = 0; g < n_head_kv_; ++g) {
            // Gather Q of the group's heads: row (j * bm + r) = head g*group+j, query q0+r.
            for (int j = 0; j < group; ++j)
                for (int r = 0; r < bm; ++r)
                    std::copy_n(q + static_cast<std::size_t>(q0 + r) * q_stride + (g * group + j) * hd, hd,
                                q_buf_.data() + (static_cast<std::size_t>(j) * bm + r) * hd);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_keys, hd, scale, q_buf_.data(), hd,
                        kc.data() + g * hd, kv_stride, 0.0f, s_buf_.data(), n_keys);
            for (int row = 0; row < rows; ++row) {
                float* s = s_buf_.data() + static_cast<std::size_t>(row) * n_keys;
                const int visible = n_prev + q0 + row % bm + 1;
                detail::softmax(s, visible);
                std::fill(s + visible, s + n_keys, 0.0f);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_keys, 1.0f, s_buf_.data(), n_keys,
                        vc.data() + g * hd, kv_stride, 0.0f, o_buf_.data(), hd);
            for (int j = 0; j < group; ++j)
                for (int r = 0; r < bm; ++r)
                    std::copy_n(o_buf_.data() + (static_cast<std::size_t>(j) * bm + r) * hd, hd,
                                out + static_cast<std::size_t>(q0 + r) * q_stride + (g * group + j) * hd);
        }
    }
}

// ---------------------------------------------------------------------------
// model

struct model::layer_weights {
    std::vector<float> attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
};

model::model(gguf_file f) : file_(std::move(f)) {}
model::model(model&&) noexcept = default;
model& model::operator=(model&&) noexcept = default;
model::~model() = default;

model model::load(const std::filesystem::path& path, std::ostream* log) {
    model m(gguf_file::open(path));
    const gguf_file& f = m.file_;

    if (log) *log << "gguf: " << path.string() << ": " << f.tensors().size()
                  << " tensors (" << f.type_histogram_string() << ")\n";

    const auto* arch = f.find("general.architecture");
    if (arch == nullptr) fail(f, "missing metadata 'general.architecture'");
    if (arch->as_string() != "llama")
        fail(f, "unsupported architecture '" + arch->as_string() + "' (only 'llama' is supported)");

    // Reject unsupported types up front, naming the first offender.
    for (const auto& t : f.tensors()) {
        if (!is_supported(t.type))
            fail(f, "tensor '" + t.name + "' has type " + std::string(type_name(t.type)) + " (" +
                        std::to_string(static_cast<uint32_t>(t.type)) + "); supported: " +
                        std::string(supported_type_names()));
    }

    hparams& hp = m.hp_;
    auto get_i32 = [&](const char* key) { return static_cast<int32_t>(f.get_int(key)); };
    hp.n_ctx_train = get_i32("llama.context_length");
    hp.n_layer = get_i32("llama.block_count");
    hp.n_embd = get_i32("llama.embedding_length");
    hp.n_ff = get_i32("llama.feed_forward_length");
    hp.n_head = get_i32("llama.attention.head_count");
    hp.n_head_kv = static_cast<int32_t>(f.get_int("llama.attention.head_count_kv", hp.n_head));
    hp.rms_eps = static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon"));
    hp.rope_freq_base = static_cast<float>(f.get_float("llama.rope.freq_base", 10000.0));
    hp.bos_id = static_cast<int32_t>(f.get_int("tokenizer.ggml.bos_token_id", -1));
    hp.eos_id = static_cast<int32_t>(f.get_int("tokenizer.ggml.eos_token_id", -1));
    if (hp.n_layer <= 0 || hp.n_embd <= 0 || hp.n_ff <= 0 || hp.n_head <= 0 || hp.n_head_kv <= 0 ||
        hp.n_embd % hp.n_head != 0 || hp.n_head % hp.n_head_kv != 0)
        fail(f, "inconsistent hyper-parameters (embedding " + std::to_string(hp.n_embd) + ", heads " +
                    std::to_string(hp.n_head) + ", kv heads " + std::to_string(hp.n_head_kv) + ")");
    hp.head_dim = hp.n_embd / hp.n_head;
    hp.n_rot = static_cast<int32_t>(f.get_int("llama.rope.dimension_count", hp.head_dim));
    if (hp.n_rot <= 0 || hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
        fail(f, "llama.rope.dimension_count " + std::to_string(hp.n_rot) + " is invalid for head size " +
                    std::to_string(hp.head_dim));
    if (const auto* sc = f.find("llama.rope.scaling.type"); sc && sc->as_string() != "none")
        fail(f, "RoPE scaling '" + sc->as_string() + "' is not supported");

    auto load_tensor = [&](const std::string& name, std::vector<int64_t> shape) {
        const auto* t = f.find_tensor(name);
        if (t == nullptr) fail(f, "missing tensor '" + name + "'");
        if (t->shape != shape) {
            auto fmt = [](const std::vector<int64_t>& s) {
                std::string r = "[";
                for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
                return r + "]";
            };
            fail(f, "tensor '" + name + "' has shape " + fmt(t->shape) + ", expected " + fmt(shape));
        }
        return f.dequantize(*t);
    };

    const int64_t d = hp.n_embd, ff = hp.n_ff, hd = hp.head_dim;
    const auto* embd = f.find_tensor("token_embd.weight");
    if (embd == nullptr) fail(f, "missing tensor 'token_embd.weight'");
    if (embd->shape.size() != 2 || embd->shape[0] != d) fail(f, "tensor 'token_embd.weight' has the wrong shape");
    hp.n_vocab = static_cast<int32_t>(embd->shape[1]);
    m.tok_embd_ = f.dequantize(*embd);
    m.out_norm_ = load_tensor("output_norm.weight", {d});
    if (f.find_tensor("output.weight") != nullptr) m.output_ = load_tensor("output.weight", {d, hp.n_vocab});

    m.layers_.resize(static_cast<std::size_t>(hp.n_layer));
    for (int il = 0; il < hp.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        auto& L = m.layers_[static_cast<std::size_t>(il)];
        L.attn_norm = load_tensor(p + "attn_norm.weight", {d});
        L.wq = load_tensor(p + "attn_q.weight", {d, hp.n_head * hd});
        L.wk = load_tensor(p + "attn_k.weight", {d, hp.n_head_kv * hd});
        L.wv = load_tensor(p + "attn_v.weight", {d, hp.n_head_kv * hd});
        L.wo = load_tensor(p + "attn_output.weight", {hp.n_head * hd, d});
        L.ffn_norm = load_tensor(p + "ffn_norm.weight", {d});
        L.w_gate = load_tensor(p + "ffn_gate.weight", {d, ff});
        L.w_up = load_tensor(p + "ffn_up.weight", {d, ff});
        L.w_down = load_tensor(p + "ffn_down.weight", {ff, d});
    }

    // Frequencies in double: theta_i = base^(-2i / n_rot).
    for (int i = 0; i < hp.n_rot / 2; ++i)
        m.inv_freq_.push_back(std::pow(static_cast<double>(hp.rope_freq_base), -2.0 * i / hp.n_rot));

    if (log) *log << "model: llama, " << hp.n_layer << " layers, embd " << hp.n_embd << ", ff " << hp.n_ff
                  << ", heads " << hp.n_head << "/" << hp.n_head_kv << ", vocab " << hp.n_vocab
                  << (m.output_.empty() ? ", tied output" : "") << "\n";
    return m;
}

std::vector<float> model::prefill(std::span<const int32_t> tokens, attention_backend& backend, bool all_logits) {
    if (tokens.empty()) throw std::invalid_argument("model::prefill: empty prompt");
    backend.reset();
    n_past_ = 0;
    attention_backend* b = &backend;
    return forward(tokens, std::span(&b, 1), all_logits, pass::prefill);
}

std::vector<float> model::decode(int32_t token, attention_backend& backend) {
    attention_backend* b = &backend;
    return forward(std::span<const int32_t>(&token, 1), std::span(&b, 1), false, pass::decode);
}

std::vector<float> model::decode_batch(std::span<const int32_t> tokens, std::span<attention_backend* const> backends) {
    if (tokens.empty() || tokens.size() != backends.size())
        throw std::invalid_argument("model::decode_batch: " + std::to_string(tokens.size()) + " tokens for " +
                                    std::to_string(backends.size()) + " backends (need the same number, at least 1)");
    for (std::size_t r = 0; r < backends.size(); ++r)
        if (backends[r] == nullptr)
            throw std::invalid_argument("model::decode_batch: backends[" + std::to_string(r) + "] is null");
    return forward(tokens, backends, true, pass::decode_batch);
}

void model::rewind(int n) {
    if (n < 0 || n > n_past_)
        throw std::out_of_range("model::rewind: n = " + std::to_string(n) + " outside [0, " + std::to_string(n_past_) +
                                "]");
    n_past_ = n;
}

std::vector<float> model::forward(std::span<const int32_t> tokens, std::span<attention_backend* const> backends,
                                  bool all_logits, pass mode) {
    const int n = static_cast<int>(tokens.size());
    const int d = hp_.n_embd, hd = hp_.head_dim, nq = hp_.n_head * hd, nkv = hp_.n_head_kv * hd, ff = hp_.n_ff;
    const auto N = static_cast<std::size_t>(n);

    std::vector<float> x(N * d), h(N * d), q(N * nq), k(N * nkv), v(N * nkv), attn(N * nq), gate(N * ff), up(N * ff);
    for (int t = 0; t < n; ++t) {
        const int32_t id = tokens[static_cast<std::size_t>(t)];
        if (id < 0 || id >= hp_.n_vocab)
            throw std::out_of_range("model: token id " + std::to_string(id) + " outside vocabulary of " +
                                    std::to_string(hp_.n_vocab));
        std::copy_n(tok_embd_.data() + static_cast<std::size_t>(id) * d, d, x.data() + static_cast<std::size_t>(t) * d);
    }

    // cos/sin per (token, pair), shared by all layers and heads.
    const int half = hp_.n_rot / 2;
    std::vector<float> cos_t(N * half), sin_t(N * half);
    for (int t = 0; t < n; ++t)
        for (int i = 0; i < half; ++i) {
            const int pos = mode == pass::decode_batch ? n_past_ : n_past_ + t;
            const double a = static_cast<double>(pos) * inv_freq_[static_cast<std::size_t>(i)];
            cos_t[static_cast<std::size_t>(t) * half + i] = static_cast<float>(std::cos(a));
            sin_t[static_cast<std::size_t>(t) * half + i] = static_cast<float>(std::sin(a));
        }

    for (int il = 0; il < hp_.n_layer; ++il) {
        const auto& L = layers_[static_cast<std::size_t>(il)];
        rms_norm(x.data(), L.attn_norm.data(), h.data(), n, d, hp_.rms_eps);
        matmul(h.data(), n, d, L.wq.data(), nq, q.data(), 0.0f);
        matmul(h.data(), n, d, L.wk.data(), nkv, k.data(), 0.0f);
        matmul(h.data(), n, d, L.wv.data(), nkv, v.data(), 0.0f);
        rope(q.data(), n, hp_.n_head, hd, hp_.n_rot, cos_t.data(), sin_t.data());
        rope(k.data(), n, hp_.n_head_kv, hd, hp_.n_rot, cos_t.data(), sin_t.data());
        if (mode == pass::prefill)
            backends[0]->prefill(il, tokens, q.data(), k.data(), v.data(), n, attn.data());
        else
            for (int r = 0; r < n; ++r) // one row per sequence (decode: n == 1)
                backends[static_cast<std::size_t>(mode == pass::decode_batch ? r : 0)]->decode(
                    il, tokens[static_cast<std::size_t>(r)], q.data() + static_cast<std::size_t>(r) * nq,
                    k.data() + static_cast<std::size_t>(r) * nkv, v.data() + static_cast<std::size_t>(r) * nkv,
                    attn.data() + static_cast<std::size_t>(r) * nq);
        matmul(attn.data(), n, nq, L.wo.data(), d, x.data(), 1.0f); // residual via beta = 1

        rms_norm(x.data(), L.ffn_norm.data(), h.data(), n, d, hp_.rms_eps);
        matmul(h.data(), n, d, L.w_gate.data(), ff, gate.data(), 0.0f);
        matmul(h.data(), n, d, L.w_up.data(), ff, up.data(), 0.0f);
        swiglu(gate.data(), up.data(), N * ff);
        matmul(gate.data(), n, ff, L.w_down.data(), d, x.data(), 1.0f);
    }
    n_past_ += mode == pass::decode_batch ? 1 : n;

    const float* w_out = output_.empty() ? tok_embd_.data() : output_.data();
    const int first = all_logits ? 0 : n - 1;
    const int rows = n - first;
    rms_norm(x.data() + static_cast<std::size_t>(first) * d, out_norm_.data(), h.data(), rows, d, hp_.rms_eps);
    std::vector<float> logits(static_cast<std::size_t>(rows) * hp_.n_vocab);
    matmul(h.data(), rows, d, w_out, hp_.n_vocab, logits.data(), 0.0f);
    return logits;
}

double mean_nll(std::span<const float> logits, std::span<const int32_t> tokens, int n_vocab) {
    const std::size_t n = tokens.size();
    if (n < 2) throw std::invalid_argument("mean_nll: need at least two tokens");
    if (logits.size() < (n - 1) * static_cast<std::size_t>(n_vocab))
        throw std::invalid_argument("mean_nll: logits too short");
    double total = 0.0;
    for (std::size_t i = 0; i + 1 < n; ++i) {
        const float* row = logits.data() + i * static_cast<std::size_t>(n_vocab);
        const double mx = *std::max_element(row, row + n_vocab);
        double sum = 0.0;
        for (int j = 0; j < n_vocab; ++j) sum += std::exp(static_cast<double>(row[j]) - mx);
        total += mx + std::log(sum) - row[tokens[i + 1]];
    }
    return total / static_cast<double>(n - 1);
}

int32_t argmax(std::span<const float> logits) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

} // namespace skv::llama
