#include "registry.hpp"
#include "registry_impl.hpp"

#include <skv/preset_list.hpp>

#include <stdexcept>

namespace skv::eval {

namespace {

using detail::build;

//! The entry of preset `name`, whose float instantiation is `Cache` (its bfloat16 one is looked up by name).
template <class Cache>
preset_info entry(std::string_view name) {
    using options = typename Cache::options;
    preset_info p;
    p.name = std::string(name);
    if constexpr (requires(options o) { o.selector.budget; } && Cache::selector_type::uses_budget) {
        p.has_budget = true;
        p.default_budget = options{}.selector.budget;
    }
    p.needs_boundaries = requires(options o) { o.segmenter.boundaries; };
    p.make = [name = p.name](const skv::model_shape& shape, const cache_config& c) {
        if (c.dtype == kv_dtype::f32) return build<Cache>(shape, c);
        std::unique_ptr<cache_handle> h;
        skv::with_preset<skv::bfloat16>(name, [&](auto bf16) { h = build<typename decltype(bf16)::type>(shape, c); });
        return h;
    };
    return p;
}

} // namespace

std::string_view to_string(kv_dtype t) { return t == kv_dtype::f32 ? "float" : "bf16"; }

const std::vector<preset_info>& presets() {
    // Every preset of <skv/preset_list.hpp>, in its order.
    static const std::vector<preset_info> all = [] {
        std::vector<preset_info> v;
        skv::for_each_preset<float>(
            [&](std::string_view name, auto preset) { v.push_back(entry<typename decltype(preset)::type>(name)); });
        return v;
    }();
    return all;
}

std::string preset_names() {
    std::string s;
    for (const auto& p : presets()) s += (s.empty() ? "" : ", ") + p.name;
    for (const auto& p : ablations()) s += ", " + p.name;
    return s;
}

const preset_info& find_preset(std::string_view name) {
    for (const auto& p : presets())
        if (p.name == name) return p;
    for (const auto& p : ablations())
        if (p.name == name) return p;
    throw std::invalid_argument("unknown policy '" + std::string(name) + "'; valid: " + preset_names());
}

std::unique_ptr<cache_handle> make_cache(std::string_view name, const skv::model_shape& shape,
                                         const cache_config& config) {
    return find_preset(name).make(shape, config);
}

} // namespace skv::eval
