// libFuzzer target: bytes -> a preset of SKV_PRESETS, a model shape, options, ragged batches and a sequence of calls
// (prefill / step / append + select + fetch + attend / exports / reset / reserve / invalid calls), every result
// checked against the naive references of tests/preset_reference.hpp.
//
// Input layout (FuzzedDataProvider): integers come from the end of the input (preset, shape, options, then one op
// per few bytes), raw bytes from the front (a palette that some episodes draw K/V/Q values from). Values are
// multiples of 1/8 in [-4, 4], drawn from a PRNG seeded by the input, from the palette, sparse, or from a small pool
// of repeated key rows (exact ties); token ids include sentence boundaries (ids 1 and 2).
//
// Checks after every decode step, per (sequence, KV head): the selection equals the reference's exactly unless a
// near tie straddles a cut (then the rule's properties, and the reference adopts the cache's valid choice); the
// attention output against ref::attend_all over the cache's own selection; retained counts, lengths, segment
// begins; export_csr / export_padded / selection_nnz / selection_max against selection(); attend() again is
// bit-identical. Invalid calls must throw skv::invalid_argument or skv::logic_error and change nothing. Any
// mismatch prints the preset, its configuration, the calls so far and what differs, then traps.
//
// SKV_FUZZ_VERBOSE=1 prints every call as it happens; SKV_FUZZ_STATS=1 prints at exit how often each kind of check
// ran.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fuzzer/FuzzedDataProvider.h>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "preset_reference.hpp"

namespace {

struct run_log {
  std::string preset, config;
  std::vector<std::string> ops;
};
run_log g_log;
const bool g_verbose = std::getenv("SKV_FUZZ_VERBOSE") != nullptr;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\n==== skv-fuzz: MISMATCH ====\npreset: %s\nconfig: %s\ncalls:\n", g_log.preset.c_str(),
               g_log.config.c_str());
  const std::size_t from = g_log.ops.size() > 60 ? g_log.ops.size() - 60 : 0;
  if (from > 0) std::fprintf(stderr, "  ... (%zu earlier calls)\n", from);
  for (std::size_t i = from; i < g_log.ops.size(); ++i) std::fprintf(stderr, "  %s\n", g_log.ops[i].c_str());
  std::fprintf(stderr, "failure: %s\n==== end ====\n", what.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

void note(std::string s) {
  if (g_verbose) std::fprintf(stderr, "[skv-fuzz] %s\n", s.c_str());
  g_log.ops.push_back(std::move(s));
}

std::string lens_text(const std::vector<std::int32_t>& indptr) {
  std::string s = "{";
  for (std::size_t i = 0; i + 1 < indptr.size(); ++i) s += (i ? "," : "") + std::to_string(indptr[i + 1] - indptr[i]);
  return s + "}";
}

//! splitmix64: deterministic everywhere (std distributions are not).
struct prng {
  std::uint64_t s = 0;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  int range(int lo, int hi) { return lo + int(next() % std::uint64_t(std::int64_t(hi) - lo + 1)); }
};

//! K/V/Q values: multiples of 1/8 in [-amp/8, amp/8] (amp <= 32), so every stored value is exact in float.
struct value_source {
  prng r;
  int mode = 0;           //!< 0 iid, 1 sparse, 2 pooled key rows (ties), 3 palette bytes
  int amp[3] = {8, 8, 8}; //!< k, v, q
  std::vector<std::uint8_t> palette;
  std::size_t at = 0;
  std::vector<std::vector<float>> pool;
  float one(int t) {
    if (mode == 1) return r.range(0, 7) == 0 ? float(r.range(-amp[t], amp[t])) / 8 : 0.f;
    if (mode == 3 && !palette.empty()) {
      const int b = palette[at++ % palette.size()];
      return float(b % (2 * amp[t] + 1) - amp[t]) / 8;
    }
    return float(r.range(-amp[t], amp[t])) / 8;
  }
  void row(float* out, int dim, int t) {
    if (mode == 2 && t == 0 && r.range(0, 3) != 0) {
      if (pool.empty()) {
        const int n = r.range(1, 4);
        for (int i = 0; i < n; ++i) {
          pool.emplace_back(dim);
          for (auto& x : pool.back()) x = float(r.range(-amp[0], amp[0])) / 8;
        }
      }
      const auto& p = pool[r.range(0, int(pool.size()) - 1)];
      std::copy(p.begin(), p.end(), out);
      return;
    }
    for (int d = 0; d < dim; ++d) out[d] = one(t);
  }
};

constexpr float k_pad = -12345.f; // padding of input buffers (NaN where values are checked)

//! A [rows, heads, dim] tensor (canonical NHD `x`) laid out as NHD, HND (padded token capacity) or padded strides.
struct laid_out {
  std::vector<float> buf;
  skv::tensor_view<const float> view;
};
laid_out lay_out(const std::vector<float>& x, std::int64_t rows, int heads, int dim, int kind, int pad, float fill) {
  laid_out L;
  if (kind == 1) {
    const std::int64_t cap = rows + pad;
    L.buf.assign(std::size_t(heads * cap * dim), fill);
    for (std::int64_t t = 0; t < rows; ++t)
      for (int h = 0; h < heads; ++h)
        std::memcpy(&L.buf[std::size_t((h * cap + t) * dim)], &x[std::size_t((t * heads + h) * dim)],
                    sizeof(float) * dim);
    L.view = skv::hnd<const float>(L.buf.data(), rows, heads, dim, cap);
  } else if (kind == 2) {
    const std::int64_t sh = dim + pad, st = heads * sh + 2 * pad + 1;
    L.buf.assign(std::size_t(rows * st), fill);
    for (std::int64_t t = 0; t < rows; ++t)
      for (int h = 0; h < heads; ++h)
        std::memcpy(&L.buf[std::size_t(t * st + h * sh)], &x[std::size_t((t * heads + h) * dim)], sizeof(float) * dim);
    L.view = {L.buf.data(), rows, heads, dim, st, sh};
  } else {
    L.buf = x;
    L.view = skv::nhd<const float>(L.buf.data(), rows, heads, dim);
  }
  return L;
}

//! An output buffer [batch, q_heads, dim] in one of the layouts, padding filled with a marker that must survive.
struct out_buffer {
  std::vector<float> buf;
  skv::tensor_view<float> view;
  std::vector<char> used;
  out_buffer(std::int64_t rows, int heads, int dim, int kind, int pad) {
    const float marker = std::numeric_limits<float>::quiet_NaN();
    if (kind == 1) {
      const std::int64_t cap = rows + pad;
      buf.assign(std::size_t(heads * cap * dim), marker);
      view = skv::hnd(buf.data(), rows, heads, dim, cap);
    } else if (kind == 2) {
      const std::int64_t sh = dim + pad, st = heads * sh + pad;
      buf.assign(std::size_t(rows * st), marker);
      view = {buf.data(), rows, heads, dim, st, sh};
    } else {
      buf.assign(std::size_t(rows * heads * dim), marker);
      view = skv::nhd(buf.data(), rows, heads, dim);
    }
    used.assign(buf.size(), 0);
    for (std::int64_t t = 0; t < rows; ++t)
      for (int h = 0; h < heads; ++h)
        for (int d = 0; d < dim; ++d) used[std::size_t(view.at(t, h) - buf.data()) + d] = 1;
  }
  std::vector<float> canonical() const {
    std::vector<float> out;
    for (std::int64_t t = 0; t < view.tokens; ++t)
      for (int h = 0; h < view.heads; ++h)
        for (int d = 0; d < view.head_dim; ++d) out.push_back(view.at(t, h)[d]);
    return out;
  }
  bool padding_intact() const {
    for (std::size_t i = 0; i < buf.size(); ++i)
      if (!used[i] && !std::isnan(buf[i])) return false;
    return true;
  }
};

enum class expect { invalid_argument, logic_error, either };

//! `fn` must throw skv::invalid_argument or skv::logic_error (as `want` says); anything else is a mismatch.
template <class F>
void expect_throw(expect want, const char* what, F&& fn) {
  try {
    fn();
  } catch (const skv::invalid_argument& e) {
    if (want == expect::logic_error)
      fail(std::string(what) + ": expected skv::logic_error, got skv::invalid_argument: " + e.what());
    return;
  } catch (const skv::logic_error& e) {
    if (want == expect::invalid_argument)
      fail(std::string(what) + ": expected skv::invalid_argument, got skv::logic_error: " + e.what());
    return;
  } catch (const std::exception& e) {
    fail(std::string(what) + ": unexpected exception type: " + e.what());
  }
  fail(std::string(what) + ": no exception");
}
template <class F>
void expect_throw(bool logic, const char* what, F&& fn) {
  expect_throw(logic ? expect::logic_error : expect::invalid_argument, what, std::forward<F>(fn));
}

template <class C>
class episode {
public:
  episode(FuzzedDataProvider& f, std::string_view name) : f_(f), name_(name) {}

  int steps() const { return steps_; }

  void run() {
    // ---- shape ----
    shape_.num_layers = f_.ConsumeIntegralInRange<int>(1, 4);
    shape_.num_kv_heads = f_.ConsumeIntegralInRange<int>(0, 7) == 0 ? 3 : f_.ConsumeIntegralInRange<int>(1, 2);
    shape_.num_q_heads = shape_.num_kv_heads * f_.ConsumeIntegralInRange<int>(1, 4);
    shape_.head_dim = f_.ConsumeIntegralInRange<int>(0, 7) == 0 ? 128 : 64;
    const bool wild = f_.ConsumeIntegralInRange<int>(0, 39) == 0; // options outside the valid ranges
    if (wild) {
      switch (f_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        shape_.head_dim = f_.PickValueInArray({0, 32, 65, 96, 256});
        break;
      case 1:
        shape_.num_q_heads += f_.ConsumeIntegralInRange<int>(-1, 1);
        break;
      case 2:
        shape_.num_layers = f_.ConsumeIntegralInRange<int>(-1, 0);
        break;
      default:
        break;
      }
    }
    decode_options(wild);
    rc_ = ref::config_of<C>(shape_, o_, true);
    g_log.preset = std::string(name_);
    g_log.config = rc_.describe() + " check_values " + std::to_string(o_.check_values);
    g_log.ops.clear();
    if (g_verbose) std::fprintf(stderr, "[skv-fuzz] %s: %s\n", g_log.preset.c_str(), g_log.config.c_str());
    const std::string bad = ref::invalid_reason(rc_);
    try {
      cache_.emplace(shape_, o_);
    } catch (const skv::invalid_argument& e) {
      if (bad.empty()) fail(std::string("valid options rejected: ") + e.what());
      note(std::string("construction rejected as expected: ") + e.what());
      return;
    } catch (const std::exception& e) {
      fail(std::string("construction threw an unexpected type: ") + e.what());
    }
    if (!bad.empty()) fail("invalid options accepted (" + bad + ")");
    model_.emplace(rc_);
    if (std::abs(double(cache_->softmax_scale()) - rc_.scale) > 0) fail("softmax_scale() differs");
    for (int l = 0; l < shape_.num_layers; ++l)
      if (cache_->window(l) != rc_.prefill_window()) fail("window(" + std::to_string(l) + ") differs");
    const int L = shape_.num_layers;
    has_query_.assign(L, 0);
    has_sel_.assign(L, 0);
    last_sel_.assign(L, {});
    last_out_.assign(L, {});

    // ---- data ----
    values_.r.s = f_.ConsumeIntegral<std::uint64_t>();
    values_.mode = f_.ConsumeIntegralInRange<int>(0, 5); // 4, 5: iid
    // keys and queries of at least +-0.5: flatter attention makes most window rankings near ties (checked by
    // properties only); values may be small
    values_.amp[0] = f_.PickValueInArray({4, 8, 16, 32});
    values_.amp[1] = f_.PickValueInArray({2, 8, 32});
    values_.amp[2] = f_.PickValueInArray({4, 8, 16, 32});
    mean_len_ = f_.ConsumeIntegralInRange<int>(1, 24);
    in_kind_ = f_.ConsumeIntegralInRange<int>(0, 2);
    dec_kind_ = f_.ConsumeIntegralInRange<int>(0, 2);
    pad_ = f_.ConsumeIntegralInRange<int>(0, 3);
    if (values_.mode == 3) values_.palette = f_.ConsumeBytes<std::uint8_t>(f_.ConsumeIntegralInRange<int>(1, 256));
    work_ = std::int64_t(shape_.num_layers) * shape_.num_kv_heads * shape_.group_size() * shape_.head_dim *
            std::max(1, rc_.prefill_window());
    if (f_.ConsumeBool()) reserve();
    note("constructed; data mode " + std::to_string(values_.mode) + ", layouts in/dec " + std::to_string(in_kind_) +
         "/" + std::to_string(dec_kind_) + " pad " + std::to_string(pad_));

    for (int ops = 0; f_.remaining_bytes() > 0 && ops < 48; ++ops) {
      const int op = f_.ConsumeIntegralInRange<int>(0, 20);
      if (op <= 1) {
        prefill_all(false);
      } else if (op == 2) {
        prefill_all(true);
      } else if (op == 3) {
        prefill_one();
      } else if (op <= 9) {
        decode(0);
      } else if (op == 10) {
        const int n = f_.ConsumeIntegralInRange<int>(2, 16);
        for (int i = 0; i < n; ++i) decode(0);
      } else if (op == 11) {
        decode(1);
      } else if (op == 12) {
        decode(2);
      } else if (op <= 14) {
        invalid();
      } else if (op == 15) {
        reset();
      } else if (op == 16) {
        recheck();
      } else if (op == 17) {
        select_only();
      } else if (op == 20) {
        reserve(); // also while layers hold prompts (tests/fuzz/crashes/reserve-after-prefill, fixed)
      } else {
        const int n = f_.ConsumeIntegralInRange<int>(1, 6);
        for (int i = 0; i < n; ++i) decode(f_.ConsumeIntegralInRange<int>(0, 1));
      }
    }
  }

private:
  // ---- options ----
  int pick(bool wild, int lo, int hi, int wlo, int whi) {
    return wild && f_.ConsumeBool() ? f_.ConsumeIntegralInRange<int>(wlo, whi) : f_.ConsumeIntegralInRange<int>(lo, hi);
  }

  void decode_options(bool wild) {
    auto& o = o_;
    o.check_values = f_.ConsumeIntegralInRange<int>(0, 3) != 0;
    switch (f_.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
      o.softmax_scale = f_.PickValueInArray({0.25f, 0.0625f, 0.5f, 0.03f});
      break;
    case 1:
      if (wild) o.softmax_scale = f_.PickValueInArray({-1.f, std::numeric_limits<float>::infinity()});
      break;
    default:
      break; // 0: 1/sqrt(head_dim)
    }
    if constexpr (requires { o.segmenter.boundaries; }) {
      o.segmenter.boundaries = {1};
      if (f_.ConsumeBool()) o.segmenter.boundaries.push_back(2);
      if (f_.ConsumeIntegralInRange<int>(0, 3) == 0) o.segmenter.max_length = pick(wild, 1, 24, -2, 24);
      if (f_.ConsumeIntegralInRange<int>(0, 3) == 0) o.segmenter.min_length = pick(wild, 0, 6, -2, 30);
      if (wild && f_.ConsumeBool()) {
        if (f_.ConsumeBool())
          o.segmenter.boundaries.clear();
        else
          o.segmenter.boundaries.push_back(-3);
      }
    } else if constexpr (requires { o.segmenter.size; }) {
      if (f_.ConsumeBool()) o.segmenter.size = pick(wild, 1, 20, -1, 20);
    }
    auto& s = o.selector;
    if constexpr (requires { s.retention.sink; }) {
      s.retention.sink = pick(wild, 0, 8, -2, 8);
    } else if constexpr (requires { s.retention.factor; }) {
      auto& r = s.retention;
      if (f_.ConsumeIntegralInRange<int>(0, 3) != 0) r.window = pick(wild, 1, 16, -1, 200);
      if (f_.ConsumeBool()) r.kernel = f_.PickValueInArray({1, 3, 5, 7, 9});
      if (wild && f_.ConsumeBool()) r.kernel = f_.PickValueInArray({0, 2, -1});
      if (f_.ConsumeBool()) r.factor = f_.PickValueInArray({1.f, 1.5f, 2.f, 3.f});
      if (wild && f_.ConsumeBool()) r.factor = 0.5f;
      if (f_.ConsumeIntegralInRange<int>(0, 4) == 0) r.pyramid_beta = f_.PickValueInArray({0, 1, 2, 5, 20});
      if (wild && f_.ConsumeBool()) r.pyramid_beta = -1;
      if (f_.ConsumeIntegralInRange<int>(0, 4) == 0) r.reuse_depth = pick(wild, 1, 3, 0, 3);
      if (f_.ConsumeIntegralInRange<int>(0, 7) == 0)
        r.unit = r.unit == skv::granularity::token ? skv::granularity::segment : skv::granularity::token;
      if (f_.ConsumeIntegralInRange<int>(0, 6) == 0) {
        const int n = wild && f_.ConsumeBool() ? shape_.num_kv_heads + 1 : shape_.num_kv_heads;
        for (int h = 0; h < n; ++h) r.head_budgets.push_back(r.window + f_.ConsumeIntegralInRange<int>(1, 48));
        if (wild && f_.ConsumeBool()) r.head_budgets[0] = 0;
      }
    } else if constexpr (requires { s.retention.recent_ratio; }) {
      auto& r = s.retention;
      if (f_.ConsumeBool()) r.recent_ratio = f_.PickValueInArray({0.5f, 0.25f, 0.75f, 0.1f, 0.9f, 1.f / 3});
      if (wild && f_.ConsumeBool()) r.recent_ratio = f_.PickValueInArray({0.f, 1.f, 1.5f});
      if (f_.ConsumeIntegralInRange<int>(0, 3) != 0) r.window = pick(wild, 1, 16, -1, 200);
    }
    if constexpr (requires { s.choice.sink; }) {
      auto& c = s.choice;
      // the preset reference ranks every layer by its own summaries: cross-layer guidance (sentence_kv_lossless's
      // default) is off here; tests/sentence_kv_test.cpp checks it against the SentenceKV reference
      if constexpr (requires { c.guided_layers; }) c.guided_layers = 0;
      if (f_.ConsumeIntegralInRange<int>(0, 7) != 0) {
        c.sink = pick(wild, 0, 8, -2, 8);
        c.recent = pick(wild, 0, 16, -2, 16);
      }
      if (f_.ConsumeIntegralInRange<int>(0, 3) == 0) c.fallback = !c.fallback;
      if (f_.ConsumeIntegralInRange<int>(0, 3) == 0) c.length_threshold = pick(wild, 0, 3, -1, 3);
      if (f_.ConsumeIntegralInRange<int>(0, 2) == 0) { // the ranking rule: query mode, whole segments
        switch (f_.ConsumeIntegralInRange<int>(0, 3)) {
        case 0:
          c.query = c.query == skv::query_mode::current ? skv::query_mode::partial_mean : skv::query_mode::current;
          break;
        case 1:
          c.query = skv::query_mode::blend;
          break;
        case 2:
          c.whole_segments = true;
          break;
        default:
          c.query = skv::query_mode::blend;
          c.whole_segments = true;
        }
      }
      if (f_.ConsumeIntegralInRange<int>(0, 3) == 0) c.dense_layers = pick(wild, 0, 3, -1, 3);
    }
    // the budget: the smallest valid one plus a little (small budgets evict and cut), or anything when wild
    const int extra = f_.PickValueInArray({0, 1, 2, 3, 5, 8, 13, 21, 34, 60});
    if (wild && f_.ConsumeBool()) {
      s.budget = f_.ConsumeIntegralInRange<int>(-1, 40);
      return;
    }
    int b = 1;
    for (; b < 4000; ++b) {
      s.budget = b;
      if (ref::invalid_reason(ref::config_of<C>(shape_, o, true)).empty()) break;
    }
    s.budget = b + extra;
  }

  // ---- inputs ----
  std::int32_t token_id() {
    if (values_.r.range(0, mean_len_ - 1) == 0) return values_.r.range(1, 2);
    return values_.r.range(3, 15);
  }
  //! A prompt length around what matters for this preset (its capacity or budget), bounded by the work limit.
  int prompt_length(int batch) {
    std::int64_t cap = rc_.budget;
    if (rc_.ret == ref::retention_kind::window_top)
      for (int h = 0; h < rc_.kv_heads; ++h) cap = std::max(cap, rc_.capacity(0, h));
    const int max_len = int(std::clamp<std::int64_t>(20000000 / (work_ * batch), 24, 420));
    cap = std::min<std::int64_t>(cap, max_len);
    int n = 1;
    switch (f_.ConsumeIntegralInRange<int>(0, 6)) {
    case 0:
      n = f_.ConsumeIntegralInRange<int>(1, 4);
      break;
    case 1:
      n = int(cap) + f_.ConsumeIntegralInRange<int>(-2, 2);
      break;
    case 2:
      n = f_.ConsumeIntegralInRange<int>(int(cap / 2), int(cap));
      break;
    case 3:
    case 4:
      n = f_.ConsumeIntegralInRange<int>(int(cap), int(2 * cap + 8));
      break;
    case 5:
      n = f_.ConsumeIntegralInRange<int>(1, max_len);
      break;
    default:
      n = f_.ConsumeIntegralInRange<int>(1, 40);
      break;
    }
    return std::clamp(n, 1, max_len);
  }

  ref::batch make_batch(const std::vector<std::int32_t>& indptr, const std::vector<std::int32_t>& ids) {
    const int QH = shape_.num_q_heads, KH = shape_.num_kv_heads, D = shape_.head_dim;
    ref::batch b{QH, KH, D, indptr, ids, {}, {}, {}, false};
    const std::int64_t rows = b.rows();
    b.k.resize(std::size_t(rows * KH * D));
    b.v.resize(b.k.size());
    b.q.resize(std::size_t(rows * QH * D));
    for (std::int64_t r = 0; r < rows * KH; ++r) values_.row(&b.k[std::size_t(r * D)], D, 0);
    for (std::int64_t r = 0; r < rows * KH; ++r) values_.row(&b.v[std::size_t(r * D)], D, 1);
    for (std::int64_t r = 0; r < rows * QH; ++r) values_.row(&b.q[std::size_t(r * D)], D, 2);
    return b;
  }

  ref::step make_step(int B) {
    const int QH = shape_.num_q_heads, KH = shape_.num_kv_heads, D = shape_.head_dim;
    ref::step st{QH, KH, D, {}, {}, {}, {}};
    for (int b = 0; b < B; ++b) st.ids.push_back(token_id());
    st.k.resize(std::size_t(B) * KH * D);
    st.v.resize(st.k.size());
    st.q.resize(std::size_t(B) * QH * D);
    for (int r = 0; r < B * KH; ++r) values_.row(&st.k[std::size_t(r) * D], D, 0);
    for (int r = 0; r < B * KH; ++r) values_.row(&st.v[std::size_t(r) * D], D, 1);
    for (int r = 0; r < B * QH; ++r) values_.row(&st.q[std::size_t(r) * D], D, 2);
    return st;
  }

  struct prefill_inputs {
    laid_out k, v, q;
    skv::prefill_args<float> args;
  };
  prefill_inputs prefill_args(const ref::batch& b, bool with_q) {
    const float fill = o_.check_values ? std::numeric_limits<float>::quiet_NaN() : k_pad;
    prefill_inputs in{lay_out(b.k, b.rows(), b.kv_heads, b.dim, in_kind_, pad_, fill),
                      lay_out(b.v, b.rows(), b.kv_heads, b.dim, in_kind_, pad_, fill),
                      lay_out(b.q, b.rows(), b.q_heads, b.dim, in_kind_, pad_, fill),
                      {}};
    in.args = {b.indptr, b.ids, in.k.view, in.v.view, with_q ? in.q.view : skv::tensor_view<const float>{}};
    return in;
  }
  struct decode_inputs {
    std::vector<std::int32_t> ids; //!< owned, so that the inputs can move
    laid_out k, v, q;
    skv::decode_args<float> args;
  };
  decode_inputs decode_args(const ref::step& st, int kind) {
    const float fill = o_.check_values ? std::numeric_limits<float>::quiet_NaN() : k_pad;
    const auto B = std::int64_t(st.ids.size());
    decode_inputs in{st.ids,
                     lay_out(st.k, B, st.kv_heads, st.dim, kind, pad_, fill),
                     lay_out(st.v, B, st.kv_heads, st.dim, kind, pad_, fill),
                     lay_out(st.q, B, st.q_heads, st.dim, kind, pad_, fill),
                     {}};
    in.args = {in.ids, in.k.view, in.v.view, in.q.view};
    return in;
  }

  // ---- calls ----
  void reserve() {
    skv::reservation r;
    r.max_batch = f_.ConsumeIntegralInRange<int>(1, 3);
    r.max_tokens = f_.ConsumeIntegralInRange<int>(1, 500);
    if (f_.ConsumeBool()) r.max_new_tokens = f_.ConsumeIntegralInRange<int>(0, 64);
    if (f_.ConsumeBool()) r.max_segments = f_.ConsumeIntegralInRange<int>(0, 64);
    note("reserve(batch " + std::to_string(r.max_batch) + ", tokens " + std::to_string(r.max_tokens) + ", new " +
         std::to_string(r.max_new_tokens) + ", segments " + std::to_string(r.max_segments) + ")");
    guarded("reserve", [&] { cache_->reserve(r); });
  }

  template <class F>
  void guarded(const std::string& what, F&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      fail("valid call " + what + " threw: " + e.what());
    }
  }

  void prefill_layer(int l, const ref::batch& b) {
    const bool with_q = rc_.prefill_window() > 0 || f_.ConsumeBool();
    auto in = prefill_args(b, with_q);
    note("prefill(layer " + std::to_string(l) + ", lengths " + lens_text(b.indptr) + (with_q ? "" : ", no q") + ")");
    guarded("prefill", [&] { cache_->prefill(l, in.args); });
    model_->prefill(l, b);
    has_query_[l] = has_sel_[l] = 0;
    check_counts(l);
    expect_throw(true, "selection() right after prefill", [&] { cache_->selection(l); });
  }

  std::vector<std::int32_t> make_indptr(int B) {
    std::vector<std::int32_t> indptr{0};
    for (int s = 0; s < B; ++s) indptr.push_back(indptr.back() + prompt_length(B));
    return indptr;
  }

  void prefill_all(bool shuffled) {
    const int B = f_.ConsumeIntegralInRange<int>(1, 3);
    const auto indptr = make_indptr(B);
    std::vector<std::int32_t> ids(std::size_t(indptr.back()));
    for (auto& t : ids) t = token_id();
    std::vector<int> order(shape_.num_layers);
    std::iota(order.begin(), order.end(), 0);
    if (shuffled)
      for (int i = int(order.size()) - 1; i > 0; --i) std::swap(order[i], order[values_.r.range(0, i)]);
    for (int l : order) {
      if (shuffled && f_.ConsumeIntegralInRange<int>(0, 3) == 0) continue;
      prefill_layer(l, make_batch(indptr, ids)); // same token ids, each layer its own K/V/Q
    }
  }

  void prefill_one() {
    const int l = f_.ConsumeIntegralInRange<int>(0, shape_.num_layers - 1);
    std::vector<std::int32_t> indptr;
    // the prompt lengths of the layer below, so that a ChunkKV layer can reuse its kept positions
    const int below = l > 0 ? l - 1 : l;
    if (model_->prefilled(below) && f_.ConsumeBool()) {
      indptr.push_back(0);
      for (int s = 0; s < model_->batch(below); ++s)
        indptr.push_back(indptr.back() + std::int32_t(model_->prompt_length(below, s)));
    } else {
      indptr = make_indptr(f_.ConsumeIntegralInRange<int>(1, 3));
    }
    std::vector<std::int32_t> ids(std::size_t(indptr.back()));
    for (auto& t : ids) t = token_id();
    prefill_layer(l, make_batch(indptr, ids));
  }

  //! One decode token for every prefilled layer. mode 0: step(); 1: append + [select] + [fetch] + attend;
  //! 2: append only (the next call selects).
  void decode(int mode) {
    bool any = false;
    for (int l = 0; l < shape_.num_layers; ++l) any |= model_->prefilled(l);
    if (!any) {
      prefill_all(false);
      return;
    }
    if (mode == 2 && rc_.ret == ref::retention_kind::heavy_hitters) mode = 1; // H2O's evictions are observed each step
    ++steps_;
    for (int l = 0; l < shape_.num_layers; ++l) {
      if (!model_->prefilled(l)) continue;
      const int B = model_->batch(l);
      const auto st = make_step(B);
      auto in = decode_args(st, dec_kind_);
      std::string ids;
      for (auto id : st.ids) ids += " " + std::to_string(id);
      const int out_kind = values_.r.range(0, 2);
      out_buffer out(B, shape_.num_q_heads, shape_.head_dim, out_kind, pad_);
      if (mode == 0) {
        note("step(layer " + std::to_string(l) + ", ids" + ids + ")");
        guarded("step", [&] { cache_->step(l, in.args, out.view); });
        model_->append(l, st);
      } else {
        note("append(layer " + std::to_string(l) + ", ids" + ids + ")");
        guarded("append", [&] { cache_->append(l, in.args); });
        model_->append(l, st);
        has_query_[l] = 1;
        has_sel_[l] = 0;
        if (mode == 2) {
          expect_throw(true, "selection() after append()", [&] { cache_->selection(l); });
          check_counts(l);
          continue;
        }
        const int how = values_.r.range(0, 3);
        if (how & 1) {
          note("select(layer " + std::to_string(l) + ")");
          guarded("select", [&] { cache_->select(l); });
        }
        if (how & 2) {
          note("fetch(layer " + std::to_string(l) + ")");
          if (how & 1)
            guarded("fetch", [&] { cache_->fetch(l); });
          else
            expect_throw(true, "fetch() before select()", [&] { cache_->fetch(l); });
        }
        note("attend(layer " + std::to_string(l) + ")");
        guarded("attend", [&] { cache_->attend(l, out.view); });
      }
      has_query_[l] = 1;
      has_sel_[l] = 1;
      check_after(l, st, out, mode == 0);
    }
  }

  //! select() on layers that appended without selecting, then the checks (no attention output to compare).
  void select_only() {
    for (int l = 0; l < shape_.num_layers; ++l) {
      if (!model_->prefilled(l)) continue;
      if (!has_query_[l]) {
        expect_throw(expect::logic_error, "select() without a decode query", [&] { cache_->select(l); });
        continue;
      }
      if (has_sel_[l]) continue;
      note("select(layer " + std::to_string(l) + ")");
      guarded("select", [&] { cache_->select(l); });
      has_sel_[l] = 1;
      const auto sel = cache_->selection(l);
      check_selection(l, sel);
      last_sel_[l] = sel;
      last_out_[l].clear();
    }
  }

  void check_selection(int l, const skv::selection_csr& sel) {
    const int P = model_->batch(l) * shape_.num_kv_heads;
    if (int(sel.indptr.size()) != P + 1 || sel.indptr[0] != 0)
      fail("selection(" + std::to_string(l) + "): indptr has " + std::to_string(sel.indptr.size()) + " entries");
    for (int p = 0; p < P; ++p)
      if (sel.indptr[p + 1] < sel.indptr[p]) fail("selection indptr decreases");
    if (std::int64_t(sel.indices.size()) != sel.indptr[P]) fail("selection indices size != indptr.back()");
    const std::string why = model_->check_selection(l, sel);
    if (!why.empty()) fail("selection differs from the reference: " + why);
  }

  void check_counts(int l) {
    const int B = model_->batch(l), H = shape_.num_kv_heads;
    guarded("length/retained/segment_begins", [&] {
      if (cache_->batch_size(l) != B) fail("batch_size(" + std::to_string(l) + ") differs");
      for (int s = 0; s < B; ++s) {
        if (cache_->length(l, s) != model_->length(l, s))
          fail("length(" + std::to_string(l) + ", " + std::to_string(s) +
               ") = " + std::to_string(cache_->length(l, s)) + ", reference " + std::to_string(model_->length(l, s)));
        for (int h = 0; h < H; ++h) {
          const auto want = std::int64_t(model_->retained(l, s * H + h).size());
          if (cache_->retained(l, s, h) != want)
            fail("retained(" + std::to_string(l) + ", " + std::to_string(s) + ", " + std::to_string(h) +
                 ") = " + std::to_string(cache_->retained(l, s, h)) + ", reference " + std::to_string(want));
        }
        if (cache_->segment_begins(l, s) != model_->segment_begins(l, s))
          fail("segment_begins(" + std::to_string(l) + ", " + std::to_string(s) +
               ") = " + ref::preset_model::list(cache_->segment_begins(l, s)) + ", reference " +
               ref::preset_model::list(model_->segment_begins(l, s)));
      }
    });
  }

  //! Attention output vs the double reference over the cache's own selection. Float storage: inputs are exact, the
  //! cache accumulates in float with polynomial_exp (~2 ulp) and merges split softmax partials, so its relative L2
  //! error stays around 1e-6 for these lengths; 1e-4 leaves headroom (the selection itself is checked exactly). The
  //! denominator is floored at 1% of the values' scale so that near-zero outputs are judged absolutely.
  void check_output(int l, const ref::step& st, const skv::selection_csr& sel, const std::vector<float>& got) {
    const auto want = ref::attend_all(model_->hist(l), st.q, shape_.num_q_heads, sel, double(cache_->softmax_scale()));
    double num = 0, den = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
      den += want[i] * want[i];
    }
    const double vscale = values_.amp[1] / 8.0 * 1e-2;
    const double floor = double(want.size()) * vscale * vscale;
    if (!(num <= 1e-8 * std::max(den, floor))) {
      std::size_t worst = 0;
      for (std::size_t i = 0; i < want.size(); ++i)
        if (!(std::abs(got[i] - want[i]) <= std::abs(got[worst] - want[worst]))) worst = i;
      fail("attention output of layer " + std::to_string(l) + " differs: relative L2 " +
           std::to_string(std::sqrt(num / std::max(den, floor))) + ", worst element " + std::to_string(worst) +
           " got " + std::to_string(got[worst]) + " want " + std::to_string(want[worst]));
    }
  }

  void check_exports(int l, const skv::selection_csr& sel) {
    const int P = model_->batch(l) * shape_.num_kv_heads;
    guarded("exports", [&] {
      const std::int64_t bound = cache_->selection_bound(l), width = cache_->selection_width(l);
      std::int32_t widest = 0;
      for (int p = 0; p < P; ++p) widest = std::max(widest, sel.indptr[p + 1] - sel.indptr[p]);
      if (bound < std::int64_t(sel.indices.size())) fail("selection_bound < nnz");
      if (width < widest) fail("selection_width < the widest pair");
      if (cache_->selection_nnz(l) != std::int64_t(sel.indices.size())) fail("selection_nnz differs");
      if (cache_->selection_max(l) != widest) fail("selection_max differs");
      std::vector<std::int32_t> indptr(P + 1, -7), indices(std::size_t(bound), -7);
      cache_->export_csr(l, indptr.data(), bound > 0 ? indices.data() : nullptr, bound);
      if (indptr != sel.indptr) fail("export_csr indptr differs from selection()");
      if (!std::equal(sel.indices.begin(), sel.indices.end(), indices.begin()))
        fail("export_csr indices differ from selection()");
      const std::int64_t w = width + values_.r.range(0, 2);
      std::vector<std::int32_t> table(std::size_t(P * std::max<std::int64_t>(w, 1)), -7), lengths(P, -7);
      cache_->export_padded(l, table.data(), w, lengths.data());
      for (int p = 0; p < P; ++p) {
        const std::int32_t n = sel.indptr[p + 1] - sel.indptr[p];
        if (lengths[p] != n) fail("export_padded length differs for pair " + std::to_string(p));
        for (std::int64_t j = 0; j < w; ++j) {
          const std::int32_t want = j < n ? sel.indices[sel.indptr[p] + j] : -1;
          if (table[std::size_t(p * w + j)] != want)
            fail("export_padded entry (" + std::to_string(p) + ", " + std::to_string(j) + ") differs");
        }
      }
    });
  }

  void check_after(int l, const ref::step& st, const out_buffer& out, bool stepped) {
    if (!out.padding_intact()) fail("attend/step wrote outside the output view");
    const auto got = out.canonical();
    skv::selection_csr sel;
    guarded("selection", [&] { sel = cache_->selection(l); });
    check_selection(l, sel);
    if (stepped) model_->observe(l);
    check_output(l, st, sel, got);
    check_counts(l);
    check_exports(l, sel);
    // attend() again, into another layout: bit-identical, and the selection stays
    out_buffer again(model_->batch(l), shape_.num_q_heads, shape_.head_dim, values_.r.range(0, 2), pad_);
    guarded("attend (again)", [&] { cache_->attend(l, again.view); });
    const auto got2 = again.canonical();
    if (std::memcmp(got.data(), got2.data(), got.size() * sizeof(float)) != 0)
      fail("attend() again gives a different output");
    if (!again.padding_intact()) fail("attend wrote outside the output view");
    skv::selection_csr sel2;
    guarded("selection", [&] { sel2 = cache_->selection(l); });
    if (sel2.indptr != sel.indptr || sel2.indices != sel.indices) fail("attend() again changed the selection");
    last_sel_[l] = sel;
    last_out_[l] = got;
  }

  //! After a rejected call: every layer still answers as before.
  void check_intact() {
    for (int l = 0; l < shape_.num_layers; ++l) {
      if (!model_->prefilled(l)) {
        expect_throw(true, "length() of a layer without a prompt", [&] { cache_->length(l, 0); });
        continue;
      }
      check_counts(l);
      if (!has_sel_[l]) continue;
      skv::selection_csr sel;
      guarded("selection", [&] { sel = cache_->selection(l); });
      if (sel.indptr != last_sel_[l].indptr || sel.indices != last_sel_[l].indices)
        fail("a rejected call changed the selection of layer " + std::to_string(l));
      if (last_out_[l].empty()) continue;
      out_buffer again(model_->batch(l), shape_.num_q_heads, shape_.head_dim, 0, 0);
      guarded("attend (after a rejected call)", [&] { cache_->attend(l, again.view); });
      const auto got = again.canonical();
      if (std::memcmp(got.data(), last_out_[l].data(), got.size() * sizeof(float)) != 0)
        fail("a rejected call changed the attention output of layer " + std::to_string(l));
    }
  }

  void recheck() {
    guarded("ledger", [&] {
      const auto m = cache_->ledger();
      if (C::store_tier == skv::tier::fast && (m.slow_bytes != 0 || m.moved_to_fast != 0 || m.moved_to_slow != 0))
        fail("ledger: a fast-tier cache reports slow-tier bytes or moves");
    });
    for (int l = 0; l < shape_.num_layers; ++l)
      if (model_->prefilled(l) && has_sel_[l]) {
        note("recheck(layer " + std::to_string(l) + ")");
        skv::selection_csr sel;
        guarded("selection", [&] { sel = cache_->selection(l); });
        check_selection(l, sel);
        check_exports(l, sel);
      }
    check_intact();
  }

  void reset() {
    note("reset()");
    guarded("reset", [&] { cache_->reset(); });
    model_->reset();
    std::fill(has_query_.begin(), has_query_.end(), 0);
    std::fill(has_sel_.begin(), has_sel_.end(), 0);
    expect_throw(true, "length() after reset()", [&] { cache_->length(0, 0); });
    expect_throw(true, "step() after reset()", [&] {
      const auto st = make_step(1);
      auto in = decode_args(st, 0);
      std::vector<float> out(st.q.size());
      cache_->step(0, in.args, ref::out_view(out, shape_.num_q_heads, shape_.head_dim));
    });
    if (f_.ConsumeBool()) reserve();
  }

  //! A call the cache must reject, and then still answer as before.
  void invalid() {
    const int L = shape_.num_layers, H = shape_.num_kv_heads, QH = shape_.num_q_heads, D = shape_.head_dim;
    int l = f_.ConsumeIntegralInRange<int>(0, L - 1);
    int prefilled_layer = -1;
    for (int i = 0; i < L; ++i)
      if (model_->prefilled((l + i) % L)) {
        prefilled_layer = (l + i) % L;
        break;
      }
    const int kind = f_.ConsumeIntegralInRange<int>(0, 15);
    note("invalid call #" + std::to_string(kind) + " (layer " + std::to_string(l) + ")");
    auto decode_on = [&](int B) {
      const auto st = make_step(B);
      return std::pair{st, decode_args(st, dec_kind_)};
    };
    switch (kind) {
    case 0: { // layer out of range
      const int bad = f_.ConsumeBool() ? L : -1;
      auto inputs = decode_on(1);
      auto& st = inputs.first;
      auto& in = inputs.second;
      std::vector<float> out(st.q.size());
      expect_throw(false, "step(bad layer)", [&] { cache_->step(bad, in.args, ref::out_view(out, QH, D)); });
      expect_throw(false, "selection(bad layer)", [&] { cache_->selection(bad); });
      break;
    }
    case 1: { // a layer without a prompt, or without a decode query
      if (!model_->prefilled(l)) {
        auto inputs = decode_on(1);
        auto& st = inputs.first;
        auto& in = inputs.second;
        std::vector<float> out(st.q.size());
        expect_throw(true, "step(layer without a prompt)",
                     [&] { cache_->step(l, in.args, ref::out_view(out, QH, D)); });
        expect_throw(true, "retained(layer without a prompt)", [&] { cache_->retained(l, 0, 0); });
      } else if (!has_query_[l]) {
        std::vector<float> out(std::size_t(model_->batch(l)) * QH * D);
        // an ordering error
        expect_throw(expect::logic_error, "attend() before append()",
                     [&] { cache_->attend(l, ref::out_view(out, QH, D)); });
        expect_throw(expect::logic_error, "select() before append()", [&] { cache_->select(l); });
      }
      break;
    }
    case 2:    // token_ids of the wrong size
    case 3:    // a K/V/Q view of the wrong shape
    case 4:    // a non-finite value
    case 5:    // a bad output view
    case 12: { // overlapping strides
      if (prefilled_layer < 0) break;
      l = prefilled_layer;
      const int B = model_->batch(l);
      auto st = make_step(B);
      std::vector<std::int32_t> ids = st.ids;
      auto in = decode_args(st, dec_kind_);
      std::vector<float> out(std::size_t(B) * QH * D);
      auto ov = ref::out_view(out, QH, D);
      bool expect = true;
      if (kind == 2) {
        if (f_.ConsumeBool() || B == 1)
          ids.push_back(3);
        else
          ids.pop_back();
        in.args.token_ids = ids;
      } else if (kind == 3) {
        auto& v = f_.ConsumeBool() ? in.args.k : f_.ConsumeBool() ? in.args.v : in.args.q;
        switch (f_.ConsumeIntegralInRange<int>(0, 3)) {
        case 0:
          v.heads += 1;
          break;
        case 1:
          v.head_dim = D == 64 ? 128 : 64;
          break;
        case 2:
          v.tokens += 1;
          break;
        default:
          v.data = nullptr;
          break;
        }
      } else if (kind == 4) {
        if (!o_.check_values) {
          expect = false;
        } else {
          const int which = f_.ConsumeIntegralInRange<int>(0, 2);
          auto& vec = which == 0 ? st.k : which == 1 ? st.v : st.q;
          vec[values_.r.range(0, int(vec.size()) - 1)] =
              f_.ConsumeBool() ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
          in = decode_args(st, dec_kind_);
        }
      } else if (kind == 5) {
        if (f_.ConsumeBool())
          ov.data = nullptr;
        else
          ov.heads -= 1;
      } else {
        if (QH > 1)
          in.args.q.stride_head = 0;
        else
          in.args.q.stride_head = in.args.q.stride_token = 1;
        if (B == 1 && QH == 1) expect = false;
      }
      if (!expect) break;
      if (f_.ConsumeBool() || kind == 5)
        expect_throw(false, "step(bad decode arguments)", [&] { cache_->step(l, in.args, ov); });
      else if (kind != 5)
        expect_throw(false, "append(bad decode arguments)", [&] { cache_->append(l, in.args); });
      break;
    }
    case 6:
    case 13: { // a bad prefill
      const auto indptr = make_indptr(f_.ConsumeIntegralInRange<int>(1, 3));
      std::vector<std::int32_t> ids(std::size_t(indptr.back()));
      for (auto& t : ids) t = token_id();
      auto b = make_batch(indptr, ids);
      std::vector<std::int32_t> bad_indptr = indptr, bad_ids = ids;
      auto in = prefill_args(b, true);
      int bad_layer = l;
      switch (f_.ConsumeIntegralInRange<int>(0, 7)) {
      case 0:
        bad_indptr[0] = 1;
        in.args.indptr = bad_indptr;
        break;
      case 1: // an empty sequence
        bad_indptr.insert(bad_indptr.begin() + 1, 0);
        in.args.indptr = bad_indptr;
        break;
      case 2:
        bad_ids.push_back(5);
        in.args.token_ids = bad_ids;
        break;
      case 3:
        in.args.k.tokens -= 1;
        break;
      case 4:
        if (rc_.prefill_window() == 0) return;
        in.args.q = {};
        break;
      case 5:
        if (!o_.check_values) return;
        b.k[values_.r.range(0, int(b.k.size()) - 1)] = std::numeric_limits<float>::quiet_NaN();
        in = prefill_args(b, true);
        break;
      case 6:
        bad_layer = f_.ConsumeBool() ? L : -1;
        break;
      default:
        bad_indptr.resize(1);
        in.args.indptr = bad_indptr;
        break;
      }
      expect_throw(false, "prefill(bad arguments)", [&] { cache_->prefill(bad_layer, in.args); });
      break;
    }
    case 7: { // no current selection
      if (!model_->prefilled(l) || has_sel_[l]) {
        expect_throw(false, "selection(bad layer)", [&] { cache_->selection(L); });
        break;
      }
      expect_throw(true, "selection() without a current selection", [&] { cache_->selection(l); });
      expect_throw(true, "selection_bound() without a current selection", [&] { cache_->selection_bound(l); });
      std::vector<std::int32_t> a(64), b(64);
      expect_throw(true, "export_csr() without a current selection",
                   [&] { cache_->export_csr(l, a.data(), b.data(), 64); });
      break;
    }
    case 8: { // export buffers too small
      if (prefilled_layer < 0 || !has_sel_[prefilled_layer]) break;
      l = prefilled_layer;
      const std::int64_t bound = cache_->selection_bound(l), width = cache_->selection_width(l);
      std::vector<std::int32_t> indptr(std::size_t(model_->batch(l) * H + 1)), indices(std::size_t(bound + 1));
      if (bound >= 1)
        expect_throw(false, "export_csr(capacity < bound)",
                     [&] { cache_->export_csr(l, indptr.data(), indices.data(), bound - 1); });
      expect_throw(false, "export_csr(null indptr)",
                   [&] { cache_->export_csr(l, nullptr, indices.data(), bound + 1); });
      if (width >= 1) {
        std::vector<std::int32_t> table(std::size_t(model_->batch(l) * H * width)), lengths(model_->batch(l) * H);
        expect_throw(false, "export_padded(width < selection_width)",
                     [&] { cache_->export_padded(l, table.data(), width - 1, lengths.data()); });
      }
      break;
    }
    case 9:
    case 14: { // per-sequence queries out of range
      if (prefilled_layer < 0) break;
      l = prefilled_layer;
      const int B = model_->batch(l);
      expect_throw(false, "retained(bad seq)", [&] { cache_->retained(l, f_.ConsumeBool() ? B : -1, 0); });
      expect_throw(false, "retained(bad head)", [&] { cache_->retained(l, 0, f_.ConsumeBool() ? H : -1); });
      expect_throw(false, "length(bad seq)", [&] { cache_->length(l, B); });
      expect_throw(false, "segment_begins(bad seq)", [&] { cache_->segment_begins(l, -1); });
      expect_throw(false, "retained(bad layer)", [&] { cache_->retained(L, 0, 0); });
      break;
    }
    case 10: { // a bad reservation
      skv::reservation r;
      r.max_batch = f_.ConsumeBool() ? 0 : 1;
      r.max_tokens = r.max_batch == 0 ? 10 : f_.PickValueInArray<std::int64_t>({0, -5, std::int64_t(INT32_MAX)});
      expect_throw(false, "reserve(bad reservation)", [&] { cache_->reserve(r); });
      break;
    }
    default: { // bad output views for attend()
      if (prefilled_layer < 0 || !has_query_[prefilled_layer]) break;
      l = prefilled_layer;
      std::vector<float> out(std::size_t(model_->batch(l) + 1) * QH * D);
      auto ov = skv::nhd(out.data(), model_->batch(l) + 1, QH, D);
      expect_throw(false, "attend(out with too many tokens)", [&] { cache_->attend(l, ov); });
      break;
    }
    }
    check_intact();
  }

  FuzzedDataProvider& f_;
  std::string_view name_;
  skv::model_shape shape_;
  typename C::options o_;
  ref::preset_config rc_;
  std::optional<C> cache_;
  std::optional<ref::preset_model> model_;
  value_source values_;
  int mean_len_ = 8, in_kind_ = 0, dec_kind_ = 0, pad_ = 0, steps_ = 0;
  std::int64_t work_ = 1;
  std::vector<char> has_query_, has_sel_;
  std::vector<skv::selection_csr> last_sel_;
  std::vector<std::vector<float>> last_out_;
};

} // namespace

//! SKV_FUZZ_STATS=1: at exit, how often each kind of check ran, per preset.
struct stats_printer {
  long runs[std::size(skv::preset_names)] = {}, steps[std::size(skv::preset_names)] = {};
  ~stats_printer() {
    if (std::getenv("SKV_FUZZ_STATS") == nullptr) return;
    const auto& s = ref::stats;
    std::fprintf(stderr, "[skv-fuzz stats] per preset (runs / decode steps):");
    for (std::size_t i = 0; i < std::size(skv::preset_names); ++i)
      std::fprintf(stderr, " %.*s %ld/%ld", int(skv::preset_names[i].size()), skv::preset_names[i].data(), runs[i],
                   steps[i]);
    std::fprintf(stderr,
                 "\n[skv-fuzz stats] pairs: exact %ld (segments cut %ld), near tie %ld, prefill open %ld; ranked with "
                 "the blended query %ld, whole segments %ld; prefills: cut %ld, near tie %ld, resolved %ld, reused "
                 "%ld; evictions %ld (near tie %ld)\n",
                 s.pairs_exact, s.pairs_cut, s.pairs_near_tie, s.pairs_unknown, s.pairs_blend, s.pairs_whole,
                 s.prefill_cut, s.prefill_near_tie, s.prefill_resolved, s.prefill_reused, s.evictions,
                 s.eviction_near_tie);
  }
} g_stats;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider f(data, size);
  const int which = f.ConsumeIntegralInRange<int>(0, int(std::size(skv::preset_names)) - 1);
  int i = 0;
  skv::for_each_preset<float>([&](std::string_view name, auto type) {
    if (i++ != which) return;
    using C = typename decltype(type)::type;
    try {
      episode<C> e(f, name);
      e.run();
      ++g_stats.runs[which];
      g_stats.steps[which] += e.steps();
    } catch (const std::exception& e) {
      fail(std::string("exception escaped: ") + e.what());
    }
  });
  g_log = run_log{}; // free what this run allocated: libFuzzer reruns inputs whose mallocs and frees differ
  return 0;
}
