//! Deliberately naive references and test fixtures: plain loops, double precision, no Thrust.
#pragma once

#include <skv/skv.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace ref {

//! A packed ragged batch of prompts in float, laid out NHD or HND.
struct batch {
  int q_heads, kv_heads, dim;
  std::vector<std::int32_t> indptr, ids;
  std::vector<float> k, v, q; // [rows, heads, dim] (NHD) or [heads, rows, dim] (HND)
  bool hnd = false;
  std::int64_t rows() const { return indptr.back(); }
  float kat(std::int64_t row, int h, int d) const { return k[index(row, h, d, kv_heads)]; }
  float vat(std::int64_t row, int h, int d) const { return v[index(row, h, d, kv_heads)]; }
  float qat(std::int64_t row, int h, int d) const { return q[index(row, h, d, q_heads)]; }
  std::int64_t index(std::int64_t row, int h, int d, int heads) const {
    return hnd ? (std::int64_t(h) * rows() + row) * dim + d : (row * heads + h) * std::int64_t(dim) + d;
  }
  template <class T>
  skv::tensor_view<const T> view(const std::vector<T>& x, int heads) const {
    return hnd ? skv::hnd<const T>(x.data(), rows(), heads, dim) : skv::nhd<const T>(x.data(), rows(), heads, dim);
  }
};

//! Random keys with a per-segment direction (so that segment summaries carry signal), values and queries.
inline batch make_batch(std::vector<int> lengths, int q_heads, int kv_heads, int dim, std::uint32_t seed,
                        bool hnd = false, int vocab = 1000) {
  batch b{q_heads, kv_heads, dim, {0}, {}, {}, {}, {}, hnd};
  for (int n : lengths) b.indptr.push_back(b.indptr.back() + n);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  const auto rows = b.rows();
  b.ids.resize(rows);
  for (auto& t : b.ids) t = tok(rng);
  b.k.resize(rows * kv_heads * dim);
  b.v.resize(rows * kv_heads * dim);
  b.q.resize(rows * q_heads * dim);
  for (auto& x : b.k) x = nd(rng);
  for (auto& x : b.v) x = nd(rng);
  for (auto& x : b.q) x = nd(rng);
  return b;
}

template <class T>
std::vector<T> convert(const std::vector<float>& x) {
  std::vector<T> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = skv::from_float<T>(x[i]);
  return y;
}

//! The batch as `T`, kept alive together with the prefill arguments that point into it.
template <class T>
struct typed_batch {
  const batch& b;
  std::vector<T> k, v, q;
  explicit typed_batch(const batch& src) : b(src), k(convert<T>(src.k)), v(convert<T>(src.v)), q(convert<T>(src.q)) {}
  skv::prefill_args<T> args() const {
    return {b.indptr, b.ids, b.view(k, b.kv_heads), b.view(v, b.kv_heads), b.view(q, b.q_heads)};
  }
};

//! One decode token per sequence, in float.
struct step {
  int q_heads, kv_heads, dim;
  std::vector<std::int32_t> ids;
  std::vector<float> k, v, q; // [batch, heads, dim]
  template <class T>
  struct typed {
    std::vector<T> k, v, q;
  };
};

inline step make_step(int batch_size, int q_heads, int kv_heads, int dim, std::mt19937& rng, int vocab = 1000) {
  step s{q_heads, kv_heads, dim, {}, {}, {}, {}};
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  for (int b = 0; b < batch_size; ++b) s.ids.push_back(tok(rng));
  s.k.resize(std::size_t(batch_size) * kv_heads * dim);
  s.v.resize(s.k.size());
  s.q.resize(std::size_t(batch_size) * q_heads * dim);
  for (auto& x : s.k) x = nd(rng);
  for (auto& x : s.v) x = nd(rng);
  for (auto& x : s.q) x = nd(rng);
  return s;
}

template <class T>
struct typed_step {
  const step& s;
  std::vector<T> k, v, q;
  explicit typed_step(const step& src) : s(src), k(convert<T>(src.k)), v(convert<T>(src.v)), q(convert<T>(src.q)) {}
  skv::decode_args<T> args() const {
    const skv::model_shape shape{1, s.q_heads, s.kv_heads, s.dim};
    return skv::make_decode_args<T>(shape, s.ids, k.data(), v.data(), q.data());
  }
};

//! A mirror of everything a sequence has seen, in float, indexed by logical position (for references).
struct history {
  int kv_heads, dim;
  std::vector<std::vector<float>> k, v; // [seq][pos * kv_heads * dim + h * dim + d]
  std::vector<std::vector<std::int32_t>> ids;
  void add_prompt(const batch& b) {
    for (std::size_t s = 0; s + 1 < b.indptr.size(); ++s) {
      k.emplace_back();
      v.emplace_back();
      ids.emplace_back();
      for (std::int64_t r = b.indptr[s]; r < b.indptr[s + 1]; ++r) {
        ids.back().push_back(b.ids[r]);
        for (int h = 0; h < kv_heads; ++h)
          for (int d = 0; d < dim; ++d) {
            k.back().push_back(b.kat(r, h, d));
            v.back().push_back(b.vat(r, h, d));
          }
      }
    }
  }
  void add_step(const step& st) {
    for (std::size_t s = 0; s < k.size(); ++s) {
      ids[s].push_back(st.ids[s]);
      for (int i = 0; i < kv_heads * dim; ++i) {
        k[s].push_back(st.k[s * kv_heads * dim + i]);
        v[s].push_back(st.v[s * kv_heads * dim + i]);
      }
    }
  }
  const float* key(int s, std::int64_t pos, int h) const { return &k[s][(pos * kv_heads + h) * dim]; }
  const float* value(int s, std::int64_t pos, int h) const { return &v[s][(pos * kv_heads + h) * dim]; }
};

//! Dense decode attention in double over an explicit position set, for one query head.
inline std::vector<double> attend(const history& hist, int seq, int kv_head, const float* q,
                                  const std::vector<std::int32_t>& positions, double scale, bool round_bf16 = false) {
  (void)round_bf16;
  const int D = hist.dim;
  std::vector<double> logits;
  double m = -INFINITY;
  for (auto p : positions) {
    double s = 0;
    const float* k = hist.key(seq, p, kv_head);
    for (int d = 0; d < D; ++d) s += double(q[d]) * k[d];
    logits.push_back(s * scale);
    m = std::max(m, logits.back());
  }
  double l = 0;
  std::vector<double> out(D, 0.0);
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const double p = std::exp(logits[i] - m);
    l += p;
    const float* v = hist.value(seq, positions[i], kv_head);
    for (int d = 0; d < D; ++d) out[d] += p * v[d];
  }
  for (auto& x : out) x /= l;
  return out;
}

//! Relative L2 error of `got` (float) against `want` (double).
inline double rel_l2(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

//! Reference output [batch, q_heads, dim] of attention over per-pair position sets (CSR over pairs).
inline std::vector<double> attend_all(const history& hist, const std::vector<float>& q, int q_heads,
                                      const skv::selection_csr& sel, double scale) {
  const int H = hist.kv_heads, G = q_heads / H, D = hist.dim, B = int(hist.k.size());
  std::vector<double> out(std::size_t(B) * q_heads * D);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const int p = b * H + h;
      std::vector<std::int32_t> pos(sel.indices.begin() + sel.indptr[p], sel.indices.begin() + sel.indptr[p + 1]);
      for (int g = 0; g < G; ++g) {
        const int qh = h * G + g;
        auto o = attend(hist, b, h, &q[(std::size_t(b) * q_heads + qh) * D], pos, scale);
        std::copy(o.begin(), o.end(), out.begin() + (std::size_t(b) * q_heads + qh) * D);
      }
    }
  return out;
}

//! An NHD [batch, q_heads, dim] output view over `out` (batch = out.size() / (q_heads * dim)).
inline skv::tensor_view<float> out_view(std::vector<float>& out, int q_heads, int dim) {
  return skv::nhd(out.data(), std::int64_t(out.size()) / (std::int64_t(q_heads) * dim), q_heads, dim);
}

inline std::vector<std::int32_t> iota(std::int32_t n, std::int32_t from = 0) {
  std::vector<std::int32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

} // namespace ref
