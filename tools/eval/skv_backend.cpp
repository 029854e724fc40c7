#include "skv_backend.hpp"

#include <chrono>

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

namespace skv::eval {

double recall_stats::mean() const {
    double s = 0;
    std::int64_t n = 0;
    for (std::size_t l = 0; l < sum.size(); ++l) {
        s += sum[l];
        n += count[l];
    }
    return n ? s / double(n) : 0.0;
}

double attention_recall(const float* q, int group, int head_dim, const float* keys, std::int64_t key_stride,
                        std::int64_t n_keys, std::span<const std::int32_t> sel, float scale) {
    const auto k = static_cast<std::int64_t>(sel.size());
    if (k >= n_keys) return 1.0;
    if (k == 0) return 0.0;
    std::vector<double> mass(static_cast<std::size_t>(n_keys), 0.0), s(static_cast<std::size_t>(n_keys));
    for (int h = 0; h < group; ++h) {
        const float* qh = q + static_cast<std::size_t>(h) * head_dim;
        double mx = -INFINITY;
        for (std::int64_t i = 0; i < n_keys; ++i) {
            const float* ki = keys + i * key_stride;
            double dot = 0;
            for (int d = 0; d < head_dim; ++d) dot += double(qh[d]) * ki[d];
            s[i] = dot * scale;
            mx = std::max(mx, s[i]);
        }
        double z = 0;
        for (std::int64_t i = 0; i < n_keys; ++i) z += (s[i] = std::exp(s[i] - mx));
        for (std::int64_t i = 0; i < n_keys; ++i) mass[i] += s[i] / z / group;
    }
    double covered = 0;
    for (auto p : sel) {
        if (p < 0 || p >= n_keys)
            throw std::out_of_range("attention_recall: selected position " + std::to_string(p) + " outside [0, " +
                                    std::to_string(n_keys) + ")");
        covered += mass[static_cast<std::size_t>(p)];
    }
    std::nth_element(mass.begin(), mass.begin() + (k - 1), mass.end(), std::greater<>());
    double best = 0;
    for (std::int64_t i = 0; i < k; ++i) best += mass[static_cast<std::size_t>(i)];
    return best > 0 ? std::min(1.0, covered / best) : 1.0;
}

skv_attention_backend::skv_attention_backend(const llama::hparams& hp, std::unique_ptr<cache_handle> cache, options o)
    : hp_(hp), cache_(std::move(cache)), opts_(o) {
    if (!cache_) throw std::invalid_argument("skv_attention_backend: null cache");
    reset();
}

void skv_attention_backend::clear_tracking() {
    step_seconds_ = 0;
    steps_ = 0;
    keys_.assign(opts_.track_recall ? static_cast<std::size_t>(hp_.n_layer) : 0, {});
    recall_.sum.assign(static_cast<std::size_t>(hp_.n_layer), 0.0);
    recall_.count.assign(static_cast<std::size_t>(hp_.n_layer), 0);
}

void skv_attention_backend::reset() {
    clear_tracking();
    if (opts_.record) {
        opts_.record->ids.clear();
        opts_.record->n_tokens = 0;
        opts_.record->q.assign(static_cast<std::size_t>(hp_.n_layer), {});
        opts_.record->k.assign(static_cast<std::size_t>(hp_.n_layer), {});
        opts_.record->v.assign(static_cast<std::size_t>(hp_.n_layer), {});
    }
}

void skv_attention_backend::store_prompt(int layer, std::span<const std::int32_t> ids, const float* q, const float* k,
                                         const float* v, int n) {
    const int nq = hp_.n_head, nkv = hp_.n_head_kv, hd = hp_.head_dim;
    const std::int32_t indptr[2] = {0, n};
    const skv::model_shape shape{hp_.n_layer, nq, nkv, hd};
    cache_->prefill(layer, skv::make_prefill_args<float>(shape, indptr, ids.first(static_cast<std::size_t>(n)), k, v, q));
    if (opts_.track_recall) {
        auto& kc = keys_[static_cast<std::size_t>(layer)];
        kc.assign(k, k + static_cast<std::size_t>(n) * nkv * hd);
    }
}

void skv_attention_backend::prefill(int layer, std::span<const std::int32_t> ids, const float* q, const float* k,
                                    const float* v, int n_tokens, float* out) {
    {
        // The prompt's own attention: exact and causal, with the reference code (its K/V copy is dropped here).
        llama::dense_attention_backend dense(hp_);
        dense.prefill(layer, ids, q, k, v, n_tokens, out);
    }
    store_prompt(layer, ids, q, k, v, n_tokens);
    if (opts_.record) {
        auto& r = *opts_.record;
        if (layer == 0) {
            r.ids.assign(ids.begin(), ids.begin() + n_tokens);
            r.n_tokens = n_tokens;
        }
        const auto L = static_cast<std::size_t>(layer);
        const auto nt = static_cast<std::size_t>(n_tokens);
        r.q[L].assign(q, q + nt * hp_.n_head * hp_.head_dim);
        r.k[L].assign(k, k + nt * hp_.n_head_kv * hp_.head_dim);
        r.v[L].assign(v, v + nt * hp_.n_head_kv * hp_.head_dim);
    }
}

void skv_attention_backend::prefill_from(const prefill_record& r, int n_tokens) {
    if (static_cast<int>(r.k.size()) != hp_.n_layer || r.n_tokens < 1)
        throw std::invalid_argument("skv_attention_backend::prefill_from: the record holds no prompt for " +
                                    std::to_string(hp_.n_layer) + " layers");
    if (n_tokens == -1) n_tokens = r.n_tokens;
    if (n_tokens < 1 || n_tokens > r.n_tokens)
        throw std::invalid_argument("skv_attention_backend::prefill_from: n_tokens = " + std::to_string(n_tokens) +
                                    " outside [1, " + std::to_string(r.n_tokens) + "] (the record's prompt)");
    clear_tracking();
    for (int l = 0; l < hp_.n_layer; ++l) {
        const auto L = static_cast<std::size_t>(l);
        store_prompt(l, r.ids, r.q[L].data(), r.k[L].data(), r.v[L].data(), n_tokens);
    }
}

void skv_attention_backend::decode(int layer, std::int32_t id, const float* q, const float* k, const float* v,
                                   float* out) {
    const int nq = hp_.n_head, nkv = hp_.n_head_kv, hd = hp_.head_dim;
    const skv::model_shape shape{hp_.n_layer, nq, nkv, hd};
    const auto t0 = std::chrono::steady_clock::now();
    cache_->step(layer, skv::make_decode_args<float>(shape, std::span<const std::int32_t>(&id, 1), k, v, q),
                 skv::nhd<float>(out, 1, nq, hd));
    step_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (layer == 0) ++steps_;
    if (!opts_.track_recall) return;

    auto& kc = keys_[static_cast<std::size_t>(layer)];
    kc.insert(kc.end(), k, k + static_cast<std::size_t>(nkv) * hd);
    const std::int64_t n_keys = static_cast<std::int64_t>(kc.size()) / (nkv * hd);
    const auto sel = cache_->selection(layer);
    const int group = nq / nkv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (int g = 0; g < nkv; ++g) {
        const std::span<const std::int32_t> s(sel.indices.data() + sel.indptr[g],
                                              static_cast<std::size_t>(sel.indptr[g + 1] - sel.indptr[g]));
        const double r = attention_recall(q + static_cast<std::size_t>(g) * group * hd, group, hd, kc.data() + g * hd,
                                          static_cast<std::int64_t>(nkv) * hd, n_keys, s, scale);
        recall_.sum[static_cast<std::size_t>(layer)] += r;
        ++recall_.count[static_cast<std::size_t>(layer)];
    }
}

} // namespace skv::eval
