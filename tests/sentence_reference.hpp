//! A deliberately naive SentenceKV, written from ../shared/reference/methods.md: loops, double precision,
//! one (sequence, KV head) at a time, no Thrust and nothing shared with the library but the option values.
#pragma once

#include <functional>
#include <map>
#include <set>

#include "reference.hpp"

namespace ref {

struct sentence_options {
  std::set<std::int32_t> boundaries;
  int max_length = 0, min_length = 0;
  int budget = 1024, sink = 32, recent = 32;
  bool prefilter = true;
  double retention = 3;
  int window = 32, kernel = 7;
  bool fallback = true;
  int threshold = 1;
  bool mean_query = true; // false: the current query ranks (Quest)
  bool blend = false;     // the unit mean query plus the unit current query ranks (overrides mean_query)
  bool whole = false;     // a sentence that does not fit is skipped, not cut
  bool minmax = false;    // rank by Quest's bound instead of the mean key
  int fixed = 0;          // > 0: fixed chunks instead of sentences
  int heavy = 0, heavy_window = 32; // prompt tokens always selected, by the window score of the last queries
  int warmup = 0;                   // the first decode steps after the prefill attend to every retained token
  int layer_budget = 0;             // > 0: this layer's decode budget (a pyramid's share); the pre-filter keeps `budget`
  int decode_budget() const { return layer_budget > 0 ? layer_budget : budget; }
  //! When set, a segment's score for one query head (instead of mean or min/max): `keys` are its retained keys.
  std::function<double(const std::vector<const float*>& keys, const double* q, int dim)> score;
};

//! Observation-window scores (SnapKV): for each position j, the softmax attention it receives from the last `w`
//! prompt queries of the KV group of head `kh`, summed (double precision, causal inside the window).
inline std::vector<double> window_scores(const history& h, int seq, int kh, const std::vector<float>& q_rows,
                                         int q_heads, std::int64_t w, double scale) {
  const std::int64_t n = std::int64_t(h.ids[seq].size());
  const int dim = h.dim, G = q_heads / h.kv_heads;
  std::vector<double> score(n, 0.0);
  for (std::int64_t i = 0; i < w; ++i) {
    const std::int64_t t = n - w + i;
    for (int g = 0; g < G; ++g) {
      const float* q = &q_rows[(t * q_heads + kh * G + g) * dim];
      std::vector<double> logit(t + 1);
      double m = -INFINITY;
      for (std::int64_t j = 0; j <= t; ++j) {
        double s = 0;
        for (int d = 0; d < dim; ++d) s += double(q[d]) * h.key(seq, j, kh)[d];
        logit[j] = s * scale;
        m = std::max(m, logit[j]);
      }
      double l = 0;
      for (auto x : logit) l += std::exp(x - m);
      for (std::int64_t j = 0; j <= t; ++j) score[j] += std::exp(logit[j] - m) / l;
    }
  }
  return score;
}

//! 1-D max pool (stride 1, padding kernel / 2) over positions [0, limit).
inline std::vector<double> max_pool(const std::vector<double>& score, std::int64_t limit, int kernel) {
  std::vector<double> pooled(limit);
  for (std::int64_t j = 0; j < limit; ++j) {
    double mx = -INFINITY;
    for (std::int64_t u = std::max<std::int64_t>(0, j - kernel / 2); u <= std::min(limit - 1, j + kernel / 2); ++u)
      mx = std::max(mx, score[u]);
    pooled[j] = mx;
  }
  return pooled;
}

//! Indices of the `k` largest values (ties: lower index first), increasing.
inline std::vector<std::int32_t> top_k(const std::vector<double>& v, std::int64_t k) {
  std::vector<std::int32_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return v[a] > v[b]; });
  order.resize(std::min<std::size_t>(order.size(), std::size_t(std::max<std::int64_t>(k, 0))));
  std::sort(order.begin(), order.end());
  return order;
}

//! The prompt queries of sequence `s` of a batch as [n, q_heads, dim] rows (NHD).
inline std::vector<float> prompt_queries(const batch& b, int s) {
  std::vector<float> rows;
  for (std::int64_t r = b.indptr[s]; r < b.indptr[s + 1]; ++r)
    for (int h = 0; h < b.q_heads; ++h)
      for (int d = 0; d < b.dim; ++d) rows.push_back(b.qat(r, h, d));
  return rows;
}

//! One sequence's SentenceKV state, for every KV head.
struct sentence_model {
  sentence_options o;
  int q_heads, kv_heads, dim;
  double scale;
  std::vector<std::int32_t> seg_begin; // closed sentences
  std::int64_t partial_begin = 0, n = 0;
  std::vector<std::vector<std::int32_t>> retained; // [head] positions
  std::vector<double> q_sum;                       // [q_heads * dim]
  int partial_queries = 0;
  bool closed_last = false;
  std::vector<std::vector<std::int32_t>> heavy; // [head] ranks (store indices) of the heavy tokens
  std::int64_t prompt = 0;                      // tokens of the prefill (the warmup counts decode steps past it)
  //! Cross-layer guidance: when `guided`, sentence s ranks by guide[s] (a sentence past the guide's end: first).
  bool guided = false;
  std::vector<double> guide = {};

  bool closes(std::int32_t id, std::int64_t len) const {
    if (o.fixed > 0) return len >= o.fixed;
    if (o.max_length > 0 && len >= o.max_length) return true;
    return o.boundaries.count(id) && len >= o.min_length;
  }

  //! Prefill: segmentation, pre-filter (per KV head).
  void prefill(const history& h, int seq, const std::vector<float>& q_rows /* [n, q_heads, dim] */) {
    n = std::int64_t(h.ids[seq].size());
    std::int64_t open = 0;
    for (std::int64_t t = 0; t < n; ++t) {
      if (open == 0) seg_begin.push_back(std::int32_t(t));
      ++open;
      if (closes(h.ids[seq][t], open)) open = 0;
    }
    partial_begin = prompt = n;
    retained.assign(kv_heads, {});
    const std::int64_t cap = std::int64_t(o.retention * o.budget);
    for (int kh = 0; kh < kv_heads; ++kh) {
      auto& keep = retained[kh];
      if (!o.prefilter || n <= cap) {
        for (std::int64_t t = 0; t < n; ++t) keep.push_back(std::int32_t(t));
        continue;
      }
      const std::int64_t w = std::min<std::int64_t>(o.window, n), limit = n - w;
      const auto pooled = max_pool(window_scores(h, seq, kh, q_rows, q_heads, w, scale), limit, o.kernel);
      std::vector<std::int32_t> order(limit);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return pooled[a] > pooled[b]; });
      order.resize(cap - w);
      for (std::int64_t j = limit; j < n; ++j) order.push_back(std::int32_t(j));
      std::sort(order.begin(), order.end());
      keep = order;
    }
    heavy.assign(kv_heads, {});
    for (int kh = 0; kh < kv_heads && o.heavy > 0; ++kh) {
      // the retained tokens past the sinks and before the prompt's tail, by window score, the earlier first on ties
      const auto& keep = retained[kh];
      const std::int64_t len = std::int64_t(keep.size());
      const std::int64_t lo = std::min<std::int64_t>(o.sink, len);
      const std::int64_t hi = std::max<std::int64_t>(lo, len - std::max({o.recent, 1, o.heavy_window}));
      const auto ws = window_scores(h, seq, kh, q_rows, q_heads, std::min<std::int64_t>(o.heavy_window, n), scale);
      std::vector<std::int32_t> order;
      for (std::int64_t k = lo; k < hi; ++k) order.push_back(std::int32_t(k));
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return ws[keep[a]] > ws[keep[b]]; });
      if (std::int64_t(order.size()) > o.heavy) order.resize(o.heavy);
      std::sort(order.begin(), order.end());
      heavy[kh] = order;
    }
    q_sum.assign(std::size_t(q_heads) * dim, 0.0);
  }

  //! A decoded token joins: K/V retained, query into the open sentence, maybe a sentence closes.
  void append(std::int32_t id, const float* q /* [q_heads, dim] */) {
    if (closed_last || partial_queries == 0) {
      std::fill(q_sum.begin(), q_sum.end(), 0.0);
      partial_queries = 0;
    }
    closed_last = false;
    ++partial_queries;
    for (std::size_t i = 0; i < q_sum.size(); ++i) q_sum[i] += q[i];
    for (auto& r : retained) r.push_back(std::int32_t(n));
    ++n;
    if (closes(id, n - partial_begin)) {
      seg_begin.push_back(std::int32_t(partial_begin));
      partial_begin = n;
      closed_last = true;
    }
  }

  //! The ranking query of each query head of KV head `kh`'s group ([group, dim]): the open sentence's mean query,
  //! the step's query `current_q` ([q_heads, dim]), or (blend) both scaled to unit length and summed.
  std::vector<double> ranking_query(int kh, const float* current_q) const {
    const int G = q_heads / kv_heads;
    std::vector<double> qbar(std::size_t(G) * dim);
    for (int g = 0; g < G; ++g) {
      double n_sum = 0, n_cur = 0; // |q_sum|^2, |current|^2 (blend: each part scaled to unit length)
      for (int d = 0; d < dim; ++d) {
        const std::size_t i = std::size_t(kh * G + g) * dim + d;
        n_sum += double(q_sum[i]) * q_sum[i];
        n_cur += double(current_q[i]) * current_q[i];
      }
      for (int d = 0; d < dim; ++d) {
        const std::size_t i = std::size_t(kh * G + g) * dim + d;
        qbar[std::size_t(g) * dim + d] = o.blend ? (n_sum > 0 ? q_sum[i] / std::sqrt(n_sum) : 0.0) +
                                                       (n_cur > 0 ? current_q[i] / std::sqrt(n_cur) : 0.0)
                                         : o.mean_query ? q_sum[i] / partial_queries
                                                        : current_q[i];
      }
    }
    return qbar;
  }

  //! This step attends to every retained token: the open sentence is short (fallback), or a warmup step (`n`
  //! counts this step's token).
  bool attends_all() const {
    return (o.fallback && partial_queries <= o.threshold) || (o.warmup > 0 && n - prompt <= o.warmup);
  }

  //! Ranks [retained rank] of the retained tokens of sentence `s` of KV head `kh`.
  std::vector<std::int32_t> members_of(int kh, std::size_t s) const {
    const auto& r = retained[kh];
    const std::int64_t lo = seg_begin[s], hi = s + 1 < seg_begin.size() ? seg_begin[s + 1] : partial_begin;
    std::vector<std::int32_t> members;
    for (std::size_t k = 0; k < r.size(); ++k)
      if (r[k] >= lo && r[k] < hi) members.push_back(std::int32_t(k));
    return members;
  }

  //! A sentence's ranking score for KV head `kh`: its summary against the group's ranking queries `qbar`, summed.
  double sentence_score(const history& h, int seq, int kh, const std::vector<double>& qbar,
                        const std::vector<std::int32_t>& members) const {
    const auto& r = retained[kh];
    const int G = q_heads / kv_heads;
    double score = 0;
    if (o.score) {
      std::vector<const float*> keys;
      for (auto k : members) keys.push_back(h.key(seq, r[k], kh));
      for (int g = 0; g < G; ++g) score += o.score(keys, &qbar[std::size_t(g) * dim], dim);
      return score;
    }
    for (int g = 0; g < G; ++g)
      for (int d = 0; d < dim; ++d) {
        double mean = 0, mn = INFINITY, mx = -INFINITY;
        for (auto k : members) {
          const double x = h.key(seq, r[k], kh)[d];
          mean += x;
          mn = std::min(mn, x);
          mx = std::max(mx, x);
        }
        mean /= double(members.size());
        const double qd = qbar[std::size_t(g) * dim + d];
        score += o.minmax ? std::max(qd * mn, qd * mx) : qd * mean;
      }
    return score;
  }

  //! What a guide layer publishes (cross-layer guidance): per closed sentence, its share of each KV head's
  //! attention estimated from its score and token count -- softmax over sentences of score * scale / group plus
  //! log(count) -- summed over the KV heads.
  std::vector<double> guide_mass(const history& h, int seq, const float* current_q) const {
    std::vector<double> mass(seg_begin.size(), 0.0);
    const int G = q_heads / kv_heads;
    for (int kh = 0; kh < kv_heads; ++kh) {
      const std::vector<double> qbar = ranking_query(kh, current_q);
      std::vector<double> logit(seg_begin.size(), -INFINITY);
      double m = -INFINITY;
      for (std::size_t s = 0; s < seg_begin.size(); ++s) {
        const auto members = members_of(kh, s);
        if (members.empty()) continue;
        logit[s] = sentence_score(h, seq, kh, qbar, members) * scale / G + std::log(double(members.size()));
        m = std::max(m, logit[s]);
      }
      double z = 0;
      for (double l : logit) z += std::isfinite(l) ? std::exp(l - m) : 0.0;
      for (std::size_t s = 0; s < seg_begin.size(); ++s)
        if (std::isfinite(logit[s])) mass[s] += std::exp(logit[s] - m) / z;
    }
    return mass;
  }

  //! Positions selected for KV head `kh` under the current state; `current_q` is the step's query.
  std::vector<std::int32_t> select(const history& h, int seq, int kh, const float* current_q) const {
    const auto& r = retained[kh];
    const std::int64_t len = std::int64_t(r.size());
    if (attends_all()) return r;
    if (len <= o.decode_budget()) return r;
    const std::vector<double> qbar = ranking_query(kh, current_q);
    // the newest retained token (the step's own) is always attended: recent counts at least 1
    const std::int64_t recent = std::max(o.recent, 1);
    const std::int64_t head = std::min<std::int64_t>(o.sink, len), tail = std::min<std::int64_t>(recent, len - head);
    // rank-eligible tokens: retained ranks [head, len - tail)
    struct sent {
      double score;
      int id;
      std::vector<std::int32_t> eligible;
    };
    std::vector<sent> sents;
    for (std::size_t s = 0; s < seg_begin.size(); ++s) {
      const std::vector<std::int32_t> members = members_of(kh, s);
      if (members.empty()) continue;
      const double score = !guided             ? sentence_score(h, seq, kh, qbar, members)
                           : s < guide.size() ? guide[s]
                                              : 2.0 * kv_heads; // closed since the guide published: first
      std::vector<std::int32_t> eligible;
      for (auto k : members)
        if (k >= head && k < len - tail) eligible.push_back(k);
      if (!eligible.empty()) sents.push_back({score, int(s), eligible});
    }
    std::stable_sort(sents.begin(), sents.end(), [](const sent& a, const sent& b) { return a.score > b.score; });
    std::set<std::int32_t> ranks;
    for (std::int64_t k = 0; k < head; ++k) ranks.insert(std::int32_t(k));
    for (std::int64_t k = len - tail; k < len; ++k) ranks.insert(std::int32_t(k));
    const std::vector<std::int32_t> none;
    const auto& hv = heavy.empty() ? none : heavy[kh];
    for (auto k : hv) ranks.insert(k);
    std::int64_t left = o.decode_budget() - o.sink - recent - std::int64_t(hv.size());
    for (const auto& s : sents) {
      if (left <= 0) break;
      if (o.whole && std::int64_t(s.eligible.size()) > left) continue; // skipped whole; lower ranks may fit
      for (std::size_t i = 0; i < s.eligible.size() && left > 0; ++i, --left) ranks.insert(s.eligible[i]);
    }
    std::vector<std::int32_t> out;
    for (auto k : ranks) out.push_back(r[k]);
    return out;
  }
};

} // namespace ref
