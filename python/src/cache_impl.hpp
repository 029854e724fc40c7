// cache_handle for one `skv::kv_cache<...>` type: tensor checks (dtype, device, rank, strides) and options by name.
// Included by one translation unit per storage type.
#pragma once

#include <skv/error.hpp>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <sstream>
#include <type_traits>
#include <utility>

#include "cache_handle.hpp"

namespace skv_python {

#if defined(SKV_BACKEND_CUDA)
inline constexpr int kdl_device = 2; // kDLCUDA
inline constexpr const char* device_text = "a CUDA tensor";
#else
inline constexpr int kdl_device = 1; // kDLCPU
inline constexpr const char* device_text = "a CPU tensor";
#endif

template <class T>
constexpr dtype dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return dtype::float32;
  else if constexpr (std::is_same_v<T, skv::half>)
    return dtype::float16;
  else
    return dtype::bfloat16;
}

template <class T>
bool has_dtype(const tensor& t) {
  const auto d = t.dtype();
  if constexpr (std::is_same_v<T, float>)
    return d.code == std::uint8_t(nb::dlpack::dtype_code::Float) && d.bits == 32 && d.lanes == 1;
  else if constexpr (std::is_same_v<T, skv::half>)
    return d.code == std::uint8_t(nb::dlpack::dtype_code::Float) && d.bits == 16 && d.lanes == 1;
  else
    return d.code == std::uint8_t(nb::dlpack::dtype_code::Bfloat) && d.bits == 16 && d.lanes == 1;
}

//! A [tokens, heads, head_dim] view of a rank-3 tensor of type T (its strides as they are; the cache checks extents
//! and that rows do not overlap). Throws TypeError / ValueError naming the argument.
template <class T>
skv::tensor_view<T> view_of(const tensor& t, const char* where, const char* name) {
  using E = std::remove_const_t<T>;
  if (!has_dtype<E>(t))
    throw nb::type_error((std::string(where) + ": argument '" + name +
                          "' has the wrong dtype; allowed: " + dtype_name(dtype_of<E>()) + " (the cache's dtype)")
                             .c_str());
  if (t.device_type() != kdl_device)
    throw nb::value_error(
        (std::string(where) + ": argument '" + name + "' is on the wrong device; allowed: " + device_text).c_str());
  if (t.ndim() != 3)
    throw nb::value_error((std::string(where) + ": argument '" + name + "' has rank " + std::to_string(t.ndim()) +
                           "; allowed: 3 ([tokens, heads, head_dim])")
                              .c_str());
  if (t.shape(2) > 1 && t.stride(2) != 1)
    throw nb::value_error((std::string(where) + ": argument '" + name + "' has stride " + std::to_string(t.stride(2)) +
                           " along head_dim; allowed: 1 (head_dim contiguous, e.g. .contiguous())")
                              .c_str());
  return {static_cast<T*>(t.data()),
          std::int64_t(t.shape(0)),
          std::int64_t(t.shape(1)),
          std::int64_t(t.shape(2)),
          t.stride(0),
          t.stride(1)};
}

//! Sets option `name` of `o` from `v`; returns false when the preset has no such option.
//! The enumerator named `text` among `choices`; a ValueError listing them otherwise.
template <class E>
E enum_option(const char* option, const std::string& text, std::initializer_list<std::pair<const char*, E>> choices) {
  std::string allowed;
  std::size_t i = 0;
  for (const auto& [name, value] : choices) {
    if (text == name) return value;
    allowed += std::string(i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + "'" + name + "'";
    ++i;
  }
  throw nb::value_error(
      ("skv.Cache: option '" + std::string(option) + "' is '" + text + "'; allowed: " + allowed).c_str());
}

template <class Options>
bool set_option(Options& o, const std::string& name, const option_value& v) {
  auto as_int = [&](const char* what) -> std::int64_t {
    if (auto* i = std::get_if<std::int64_t>(&v)) return *i;
    if (auto* b = std::get_if<bool>(&v)) return *b;
    throw nb::type_error(("skv.Cache: option '" + name + "' must be " + what).c_str());
  };
  auto as_float = [&]() -> double {
    if (auto* d = std::get_if<double>(&v)) return *d;
    if (auto* i = std::get_if<std::int64_t>(&v)) return double(*i);
    throw nb::type_error(("skv.Cache: option '" + name + "' must be a number").c_str());
  };
  auto as_ids = [&]() {
    if (auto* l = std::get_if<std::vector<std::int64_t>>(&v)) return *l;
    throw nb::type_error(("skv.Cache: option '" + name + "' must be a list of ints").c_str());
  };
  auto as_str = [&]() {
    if (auto* s = std::get_if<std::string>(&v)) return *s;
    throw nb::type_error(("skv.Cache: option '" + name + "' must be a string").c_str());
  };
#define SKV_PY_INT(path, key)                                                                                          \
  if constexpr (requires { o.path; })                                                                                  \
    if (name == key) {                                                                                                 \
      o.path = static_cast<std::decay_t<decltype(o.path)>>(as_int("an int"));                                          \
      return true;                                                                                                     \
    }
  // the cache's own
  if (name == "softmax_scale") return o.softmax_scale = float(as_float()), true;
  if (name == "check_values") return o.check_values = as_int("a bool") != 0, true;
  // segmenter
  if constexpr (requires { o.segmenter.boundaries; })
    if (name == "boundaries") {
      const auto ids = as_ids();
      o.segmenter.boundaries.assign(ids.begin(), ids.end());
      return true;
    }
  SKV_PY_INT(segmenter.max_length, "max_length")
  SKV_PY_INT(segmenter.min_length, "min_length")
  SKV_PY_INT(segmenter.size, "segment_size")
  // selector
  SKV_PY_INT(selector.budget, "budget")
  if constexpr (requires { o.selector.retention.factor; })
    if (name == "factor") return o.selector.retention.factor = float(as_float()), true;
  if constexpr (requires { o.selector.retention.recent_ratio; })
    if (name == "recent_ratio") return o.selector.retention.recent_ratio = float(as_float()), true;
  SKV_PY_INT(selector.retention.window, "window")
  SKV_PY_INT(selector.retention.kernel, "kernel")
  SKV_PY_INT(selector.retention.pyramid_beta, "pyramid_beta")
  SKV_PY_INT(selector.retention.reuse_depth, "reuse_depth")
  if constexpr (requires { o.selector.retention.unit; })
    if (name == "unit") {
      o.selector.retention.unit = enum_option<skv::granularity>(
          "unit", as_str(), {{"token", skv::granularity::token}, {"segment", skv::granularity::segment}});
      return true;
    }
  if constexpr (requires { o.selector.retention.head_budgets; })
    if (name == "head_budgets") {
      const auto b = as_ids();
      o.selector.retention.head_budgets.assign(b.begin(), b.end());
      return true;
    }
  SKV_PY_INT(selector.retention.sink, "sink")
  SKV_PY_INT(selector.choice.sink, "sink")
  SKV_PY_INT(selector.choice.recent, "recent")
  SKV_PY_INT(selector.choice.fallback, "fallback")
  SKV_PY_INT(selector.choice.length_threshold, "length_threshold")
  SKV_PY_INT(selector.choice.dense_layers, "dense_layers")
  SKV_PY_INT(selector.choice.whole_segments, "whole_segments")
  SKV_PY_INT(selector.choice.heavy, "heavy")
  SKV_PY_INT(selector.choice.heavy_window, "heavy_window")
  SKV_PY_INT(selector.choice.current_layers, "current_layers")
  SKV_PY_INT(selector.choice.warmup, "warmup")
  SKV_PY_INT(selector.choice.pyramid_beta, "decode_pyramid_beta") // "pyramid_beta" is the retention's
  SKV_PY_INT(selector.choice.guided_layers, "guided_layers")
  SKV_PY_INT(selector.choice.guide_layer, "guide_layer")
  if constexpr (requires { o.selector.choice.query; })
    if (name == "query") {
      o.selector.choice.query = enum_option<skv::query_mode>(
          "query", as_str(),
          {{"partial_mean", skv::query_mode::partial_mean}, {"current", skv::query_mode::current},
           {"blend", skv::query_mode::blend}});
      return true;
    }
#undef SKV_PY_INT
  return false;
}

//! The option names `Options` accepts.
template <class Options>
std::vector<std::string> options_of() {
  static const char* all[] = {
      "softmax_scale", "check_values", "boundaries", "max_length", "min_length",       "segment_size", "budget",
      "factor",        "recent_ratio", "window",     "kernel",     "pyramid_beta",     "reuse_depth",  "unit",
      "head_budgets",  "sink",         "recent",     "fallback",   "length_threshold", "dense_layers", "query",
      "whole_segments", "heavy",        "heavy_window", "current_layers", "warmup",
      "decode_pyramid_beta", "guided_layers", "guide_layer"};
  std::vector<std::string> names;
  for (const char* n : all) {
    Options probe;
    option_value v = std::string(n) == "boundaries" || std::string(n) == "head_budgets"
                         ? option_value(std::vector<std::int64_t>{})
                     : std::string(n) == "unit"  ? option_value(std::string("token"))
                     : std::string(n) == "query" ? option_value(std::string("partial_mean"))
                                                 : option_value(std::int64_t(1));
    if (set_option(probe, n, v)) names.push_back(n);
  }
  return names;
}

template <class Cache>
class cache_impl final : public cache_handle {
  using T = typename Cache::value_type;

public:
  cache_impl(const skv::model_shape& shape, const typename Cache::options& o) : cache_(shape, o) {}

  void prefill(int layer, const tensor& k, const tensor& v, const tensor* q, std::span<const std::int32_t> ids,
               std::span<const std::int32_t> indptr) override {
    constexpr const char* where = "skv.Cache.prefill";
    skv::prefill_args<T> a{indptr, ids, view_of<const T>(k, where, "k"), view_of<const T>(v, where, "v"), {}};
    if (q != nullptr) a.q = view_of<const T>(*q, where, "q");
    nb::gil_scoped_release unlocked;
    cache_.prefill(layer, a);
  }
  void append(int layer, const tensor& k, const tensor& v, const tensor& q,
              std::span<const std::int32_t> ids) override {
    const auto a = decode(k, v, q, ids, "skv.Cache.append");
    nb::gil_scoped_release unlocked;
    cache_.append(layer, a);
  }
  void step(int layer, const tensor& k, const tensor& v, const tensor& q, std::span<const std::int32_t> ids,
            const tensor& out) override {
    constexpr const char* where = "skv.Cache.step";
    const auto a = decode(k, v, q, ids, where);
    const auto o = view_of<T>(out, where, "out");
    nb::gil_scoped_release unlocked;
    cache_.step(layer, a, o);
  }
  double time_steps(int layer, const tensor& k, const tensor& v, const tensor& q, std::span<const std::int32_t> ids,
                    const tensor& out, int iterations) override {
    constexpr const char* where = "skv.Cache._time_steps";
    if (iterations < 1) {
      throw nb::value_error(
          (std::string(where) + ": argument 'iterations' is " + std::to_string(iterations) + "; allowed: >= 1")
              .c_str());
    }
    const auto a = decode(k, v, q, ids, where);
    const auto o = view_of<T>(out, where, "out");
    nb::gil_scoped_release unlocked;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i) cache_.step(layer, a, o);
    skv::synchronize(skv::stream_t{});
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iterations;
  }
  void select(int layer) override {
    nb::gil_scoped_release unlocked;
    cache_.select(layer);
  }
  void attend(int layer, const tensor& out) override {
    const auto o = view_of<T>(out, "skv.Cache.attend", "out");
    nb::gil_scoped_release unlocked;
    cache_.attend(layer, o);
  }
  skv::selection_csr selection(int layer) override {
    nb::gil_scoped_release unlocked;
    return cache_.selection(layer);
  }
  ledger_dict ledger() override {
    const auto m = cache_.ledger();
    return {m.fast_bytes, m.slow_bytes, m.moved_to_fast, m.moved_to_slow};
  }
  void reserve(int max_batch, std::int64_t max_tokens) override {
    nb::gil_scoped_release unlocked;
    cache_.reserve(max_batch, max_tokens);
  }
  void reset() override { cache_.reset(); }
  std::int64_t length(int layer, int seq) const override { return cache_.length(layer, seq); }
  std::int64_t retained(int layer, int seq, int head) const override { return cache_.retained(layer, seq, head); }
  std::vector<std::int32_t> segment_begins(int layer, int seq) const override {
    return cache_.segment_begins(layer, seq);
  }
  int window(int layer) const override { return cache_.window(layer); }
  int batch_size(int layer) const override { return cache_.batch_size(layer); }
  float softmax_scale() const override { return cache_.softmax_scale(); }
  dtype storage() const override { return dtype_of<T>(); }

private:
  skv::decode_args<T> decode(const tensor& k, const tensor& v, const tensor& q, std::span<const std::int32_t> ids,
                             const char* where) const {
    return {ids, view_of<const T>(k, where, "k"), view_of<const T>(v, where, "v"), view_of<const T>(q, where, "q")};
  }
  Cache cache_;
};

//! Factories of every preset for storage type T.
template <class T>
std::map<std::string, factory> make_factories() {
  std::map<std::string, factory> m;
  skv::for_each_preset<T>([&](std::string_view name, auto preset) {
    using Cache = typename decltype(preset)::type;
    m.emplace(std::string(name), [name = std::string(name)](const skv::model_shape& shape, const option_map& opts) {
      typename Cache::options o;
      for (const auto& [key, value] : opts) {
        if (key == "boundaries" && !requires { o.segmenter.boundaries; }) continue; // only sentence presets read it
        if (!set_option(o, key, value)) {
          std::string valid;
          for (const auto& n : options_of<typename Cache::options>()) valid += (valid.empty() ? "" : ", ") + n;
          throw nb::value_error(
              ("skv.Cache: preset '" + name + "' has no option '" + key + "'; it has: " + valid).c_str());
        }
      }
      return std::unique_ptr<cache_handle>(new cache_impl<Cache>(shape, o));
    });
  });
  return m;
}

} // namespace skv_python
