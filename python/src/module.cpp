// The `skv._skv` extension module (`skv._skv_cuda` when compiled by nvcc for the CUDA backend): preset caches over
// DLPack tensors. The Python package (python/skv) wraps it; this file only converts arguments.
#include <skv/error.hpp>
#include <skv/segmenter/sentence_segmenter.hpp>

#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "cache_handle.hpp"

#ifndef SKV_PY_MODULE_NAME
#  define SKV_PY_MODULE_NAME _skv
#endif

namespace skv_python {

std::string dtype_name(dtype t) {
  return t == dtype::float32 ? "torch.float32" : t == dtype::float16 ? "torch.float16" : "torch.bfloat16";
}

namespace {

using ids_array = nb::ndarray<const std::int32_t, nb::ndim<1>, nb::device::cpu, nb::c_contig>;
std::span<const std::int32_t> span_of(const ids_array& a) { return {a.data(), a.shape(0)}; }

const std::map<std::string, factory>& factories(dtype t) {
  static const auto f32 = factories_float32(), f16 = factories_float16(), bf16 = factories_bfloat16();
  return t == dtype::float32 ? f32 : t == dtype::float16 ? f16 : bf16;
}

dtype parse_dtype(const std::string& s) {
  if (s == "float32" || s == "torch.float32") return dtype::float32;
  if (s == "float16" || s == "torch.float16") return dtype::float16;
  if (s == "bfloat16" || s == "torch.bfloat16") return dtype::bfloat16;
  throw nb::type_error(("skv.Cache: dtype '" + s +
                        "' is not a storage type; allowed: torch.float32, torch.float16, "
                        "torch.bfloat16")
                           .c_str());
}

option_value to_option(const std::string& key, nb::handle v) {
  if (nb::isinstance<nb::bool_>(v)) return nb::cast<bool>(v);
  if (nb::isinstance<nb::int_>(v)) return nb::cast<std::int64_t>(v);
  if (nb::isinstance<nb::float_>(v)) return nb::cast<double>(v);
  if (nb::isinstance<nb::str>(v)) return nb::cast<std::string>(v);
  if (nb::isinstance<nb::list>(v) || nb::isinstance<nb::tuple>(v)) {
    std::vector<std::int64_t> out;
    for (nb::handle e : v) {
      if (!nb::isinstance<nb::int_>(e))
        throw nb::type_error(("skv.Cache: option '" + key + "' must be a list of ints").c_str());
      out.push_back(nb::cast<std::int64_t>(e));
    }
    return out;
  }
  throw nb::type_error(("skv.Cache: option '" + key + "' has an unsupported type").c_str());
}

nb::ndarray<nb::numpy, std::int32_t, nb::ndim<1>> to_numpy(std::vector<std::int32_t>&& v) {
  auto* heap = new std::vector<std::int32_t>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<std::int32_t>*>(p); });
  return nb::ndarray<nb::numpy, std::int32_t, nb::ndim<1>>(heap->data(), {heap->size()}, owner);
}

} // namespace

} // namespace skv_python

NB_MODULE(SKV_PY_MODULE_NAME, m) {
  using namespace skv_python;
  m.doc() = "skv: composable KV-cache policies (C++ core; see the `skv` package for the Python API)";
  m.attr("backend") = SKV_BACKEND_NAME;
  // an out-of-order call is a ValueError for Python callers, as bad arguments are (skv::invalid_argument is one)
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const skv::logic_error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("presets", [] {
    std::vector<std::string> names;
    for (auto n : skv::preset_names) names.emplace_back(n);
    return names;
  });
  m.def(
      "ends_sentence", [](const std::string& text) { return skv::ends_sentence(text); }, nb::arg("text"));
  m.def(
      "sentence_boundaries", [](const std::vector<std::string>& vocab) { return skv::sentence_boundaries(vocab); },
      nb::arg("vocab"), "The ids (indices into `vocab`) of the tokens whose decoded text ends a sentence.");

  nb::class_<cache_handle>(m, "CacheHandle")
      .def(
          "prefill",
          [](cache_handle& c, int layer, const tensor& k, const tensor& v, std::optional<tensor> q,
             const ids_array& ids,
             const ids_array& indptr) { c.prefill(layer, k, v, q ? &*q : nullptr, span_of(ids), span_of(indptr)); },
          nb::arg("layer"), nb::arg("k"), nb::arg("v"), nb::arg("q").none(), nb::arg("token_ids"), nb::arg("indptr"))
      .def(
          "append",
          [](cache_handle& c, int layer, const tensor& k, const tensor& v, const tensor& q, const ids_array& ids) {
            c.append(layer, k, v, q, span_of(ids));
          },
          nb::arg("layer"), nb::arg("k"), nb::arg("v"), nb::arg("q"), nb::arg("token_ids"))
      .def(
          "step",
          [](cache_handle& c, int layer, const tensor& k, const tensor& v, const tensor& q, const ids_array& ids,
             const tensor& out) { c.step(layer, k, v, q, span_of(ids), out); },
          nb::arg("layer"), nb::arg("k"), nb::arg("v"), nb::arg("q"), nb::arg("token_ids"), nb::arg("out"))
      .def(
          "time_steps",
          [](cache_handle& c, int layer, const tensor& k, const tensor& v, const tensor& q, const ids_array& ids,
             const tensor& out, int iterations) { return c.time_steps(layer, k, v, q, span_of(ids), out, iterations); },
          nb::arg("layer"), nb::arg("k"), nb::arg("v"), nb::arg("q"), nb::arg("token_ids"), nb::arg("out"),
          nb::arg("iterations"))
      .def("select", &cache_handle::select, nb::arg("layer"))
      .def("attend", &cache_handle::attend, nb::arg("layer"), nb::arg("out"))
      .def(
          "selection",
          [](cache_handle& c, int layer) {
            auto s = c.selection(layer);
            return nb::make_tuple(to_numpy(std::move(s.indptr)), to_numpy(std::move(s.indices)));
          },
          nb::arg("layer"))
      .def("ledger",
           [](cache_handle& c) {
             const auto l = c.ledger();
             nb::dict d;
             d["fast_bytes"] = l.fast_bytes;
             d["slow_bytes"] = l.slow_bytes;
             d["moved_to_fast"] = l.moved_to_fast;
             d["moved_to_slow"] = l.moved_to_slow;
             return d;
           })
      .def("reserve", &cache_handle::reserve, nb::arg("max_batch"), nb::arg("max_tokens"))
      .def("reset", &cache_handle::reset)
      .def("length", &cache_handle::length, nb::arg("layer"), nb::arg("seq"))
      .def("retained", &cache_handle::retained, nb::arg("layer"), nb::arg("seq"), nb::arg("head"))
      .def("segment_begins", &cache_handle::segment_begins, nb::arg("layer"), nb::arg("seq"))
      .def("window", &cache_handle::window, nb::arg("layer") = 0)
      .def("batch_size", &cache_handle::batch_size, nb::arg("layer"))
      .def_prop_ro("softmax_scale", &cache_handle::softmax_scale)
      .def_prop_ro("dtype", [](const cache_handle& c) { return dtype_name(c.storage()); });

  m.def(
      "make_cache",
      [](const std::string& preset, int num_layers, int num_q_heads, int num_kv_heads, int head_dim,
         const std::string& dt, const nb::dict& options) {
        const auto& table = factories(parse_dtype(dt));
        const auto it = table.find(preset);
        if (it == table.end()) {
          std::string valid;
          for (const auto& [name, f] : table) valid += (valid.empty() ? "" : ", ") + name;
          throw nb::value_error(("skv.Cache: argument 'preset' is '" + preset + "'; allowed: " + valid).c_str());
        }
        option_map opts;
        for (auto [k, v] : options) {
          const auto key = nb::cast<std::string>(k);
          opts.emplace(key, to_option(key, v));
        }
        return it->second(skv::model_shape{num_layers, num_q_heads, num_kv_heads, head_dim}, opts);
      },
      nb::arg("preset"), nb::arg("num_layers"), nb::arg("num_q_heads"), nb::arg("num_kv_heads"), nb::arg("head_dim"),
      nb::arg("dtype"), nb::arg("options"));
}
