#include "registry.hpp"

#include <skv/preset_list.hpp>

#include <stdexcept>

namespace skv::eval {

namespace {

template <class Cache>
class cache_model final : public cache_handle {
public:
    cache_model(const skv::model_shape& shape, const typename Cache::options& o) : cache_(shape, o) {}
    void prefill(int layer, const skv::prefill_args<float>& a) override { cache_.prefill(layer, a); }
    void step(int layer, const skv::decode_args<float>& a, skv::tensor_view<float> out) override {
        cache_.step(layer, a, out);
    }
    skv::selection_csr selection(int layer) override { return cache_.selection(layer); }
    skv::memory_ledger ledger() override { return cache_.ledger(); }
    std::int64_t retained(int layer, int seq, int head) const override { return cache_.retained(layer, seq, head); }

private:
    Cache cache_;
};

template <class Cache>
std::unique_ptr<cache_handle> build(const skv::model_shape& shape, const cache_config& c) {
    typename Cache::options o;
    if constexpr (requires { o.selector.budget; })
        if (c.budget) o.selector.budget = *c.budget;
    if constexpr (requires { o.segmenter.boundaries; }) o.segmenter.boundaries = c.boundaries;
    return std::make_unique<cache_model<Cache>>(shape, o);
}

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
    return s;
}

const preset_info& find_preset(std::string_view name) {
    for (const auto& p : presets())
        if (p.name == name) return p;
    throw std::invalid_argument("unknown policy '" + std::string(name) + "'; valid: " + preset_names());
}

std::unique_ptr<cache_handle> make_cache(std::string_view name, const skv::model_shape& shape,
                                         const cache_config& config) {
    return find_preset(name).make(shape, config);
}

} // namespace skv::eval
