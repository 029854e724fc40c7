#pragma once
//! \file registry.hpp
//! Run-time access to skv's presets by name: a type-erased cache (cache_handle) and a registry that builds one
//! for a preset name, a budget and a storage type. The names are exactly the typedefs of <skv/presets.hpp>.

#include <skv/kv_cache.hpp>
#include <skv/ledger.hpp>
#include <skv/tensor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace skv::eval {

//! Storage type of the cached K/V (attention always accumulates in float).
enum class kv_dtype { f32, bf16 };

//! "float" / "bf16".
std::string_view to_string(kv_dtype t);

//! One `skv::kv_cache<...>` behind a virtual interface, fed with float K/V/Q (batch size 1 in the tools, but
//! nothing here assumes it).
class cache_handle {
public:
    virtual ~cache_handle() = default;
    virtual void prefill(int layer, const skv::prefill_args<float>& a) = 0;
    //! append + select + attend; `out` is [batch, num_q_heads, head_dim].
    virtual void step(int layer, const skv::decode_args<float>& a, skv::tensor_view<float> out) = 0;
    //! The current selection of `layer` (logical positions per (sequence, KV head)); valid after step().
    virtual skv::selection_csr selection(int layer) = 0;
    virtual skv::memory_ledger ledger() = 0;
    //! Tokens retained for sequence `seq`, KV head `head` of `layer`.
    virtual std::int64_t retained(int layer, int seq, int head) const = 0;
};

//! What a preset is built with.
struct cache_config {
    std::optional<int> budget;              //!< `options.selector.budget`; unset: the preset's default
    std::vector<std::int32_t> boundaries;   //!< `options.segmenter.boundaries` for sentence segmenters
    kv_dtype dtype = kv_dtype::f32;
};

//! One registry entry.
struct preset_info {
    std::string name;              //!< the typedef's name in <skv/presets.hpp>
    bool has_budget = false;       //!< its selector has `options.budget`
    int default_budget = 0;        //!< that option's default (0 when !has_budget)
    bool needs_boundaries = false; //!< its segmenter has `options.boundaries` (sentence presets)
    std::function<std::unique_ptr<cache_handle>(const skv::model_shape&, const cache_config&)> make;
};

//! Every preset, in the order of <skv/presets.hpp>.
const std::vector<preset_info>& presets();

//! Ablation variants of the presets for skv-eval (tools/eval/ablations.cpp): a preset with one slot's type or
//! options changed, named `base+change` (or a new name for a new composition); see docs/results.md.
const std::vector<preset_info>& ablations();

//! The entry called `name` (a preset or an ablation). Throws std::invalid_argument listing the valid names if
//! there is none.
const preset_info& find_preset(std::string_view name);

//! The valid names, comma-separated.
std::string preset_names();

//! Builds preset `name` for `shape`. Throws std::invalid_argument for an unknown name, skv::invalid_argument
//! (from the library's validation) for options the preset rejects, e.g. a budget too small for its sink and
//! recent windows.
std::unique_ptr<cache_handle> make_cache(std::string_view name, const skv::model_shape& shape,
                                         const cache_config& config);

} // namespace skv::eval
