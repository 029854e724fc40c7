// The Python binding's view of an skv cache: one preset and storage type behind a virtual interface, fed with
// DLPack tensors (torch tensors, zero-copy: data pointer, shape and strides as they are).
#pragma once

#include <skv/preset_list.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace skv_python {

namespace nb = nanobind;
using tensor = nb::ndarray<>; //!< any dtype, any device: checked against the cache's

//! Storage types the binding compiles, by their torch names.
enum class dtype { float32, float16, bfloat16 };
std::string dtype_name(dtype t);

//! An option value from Python: an int, a float, a bool, a string (enums) or a list of ints.
using option_value = std::variant<bool, std::int64_t, double, std::string, std::vector<std::int64_t>>;
using option_map = std::map<std::string, option_value>;

struct ledger_dict {
  std::size_t fast_bytes, slow_bytes, moved_to_fast, moved_to_slow;
};

class cache_handle {
public:
  virtual ~cache_handle() = default;
  virtual void prefill(int layer, const tensor& k, const tensor& v, const tensor* q, std::span<const std::int32_t> ids,
                       std::span<const std::int32_t> indptr) = 0;
  virtual void append(int layer, const tensor& k, const tensor& v, const tensor& q,
                      std::span<const std::int32_t> ids) = 0;
  virtual void step(int layer, const tensor& k, const tensor& v, const tensor& q, std::span<const std::int32_t> ids,
                    const tensor& out) = 0;
  //! `iterations` steps with the same inputs in a C++ loop (GIL released): seconds per step, the baseline against
  //! which bench/python/speed.py measures the Python boundary. Each call appends a token, as step() does.
  virtual double time_steps(int layer, const tensor& k, const tensor& v, const tensor& q,
                            std::span<const std::int32_t> ids, const tensor& out, int iterations) = 0;
  virtual void select(int layer) = 0;
  virtual void attend(int layer, const tensor& out) = 0;
  virtual skv::selection_csr selection(int layer) = 0;
  virtual ledger_dict ledger() = 0;
  virtual void reserve(int max_batch, std::int64_t max_tokens) = 0;
  virtual void reset() = 0;
  virtual std::int64_t length(int layer, int seq) const = 0;
  virtual std::int64_t retained(int layer, int seq, int head) const = 0;
  virtual std::vector<std::int32_t> segment_begins(int layer, int seq) const = 0;
  virtual int window(int layer) const = 0;
  virtual int batch_size(int layer) const = 0;
  virtual float softmax_scale() const = 0;
  virtual dtype storage() const = 0;
};

using factory = std::function<std::unique_ptr<cache_handle>(const skv::model_shape&, const option_map&)>;

//! The factories of one storage type, by preset name (caches_*.cpp fill them, one file per storage type).
std::map<std::string, factory> factories_float32();
std::map<std::string, factory> factories_float16();
std::map<std::string, factory> factories_bfloat16();

} // namespace skv_python
