#include "registry.hpp"

#include <skv/presets.hpp>

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

//! The entry for preset alias template `Preset` (e.g. skv::sentence_kv) called `name`.
template <template <skv::storage_type> class Preset>
preset_info entry(const char* name) {
    using options = typename Preset<float>::options;
    preset_info p;
    p.name = name;
    if constexpr (requires(options o) { o.selector.budget; }) {
        p.has_budget = true;
        p.default_budget = options{}.selector.budget;
    }
    p.needs_boundaries = requires(options o) { o.segmenter.boundaries; };
    p.make = [](const skv::model_shape& shape, const cache_config& c) {
        return c.dtype == kv_dtype::f32 ? build<Preset<float>>(shape, c) : build<Preset<skv::bfloat16>>(shape, c);
    };
    return p;
}

} // namespace

std::string_view to_string(kv_dtype t) { return t == kv_dtype::f32 ? "float" : "bf16"; }

const std::vector<preset_info>& presets() {
    // One line per preset of <skv/presets.hpp>.
    static const std::vector<preset_info> all = {
        entry<skv::full_kv>("full_kv"),
        entry<skv::streaming_llm>("streaming_llm"),
        entry<skv::sentence_kv>("sentence_kv"),
        entry<skv::sentence_kv_lossless>("sentence_kv_lossless"),
        entry<skv::sentence_kv_paper>("sentence_kv_paper"),
        entry<skv::snap_kv>("snap_kv"),
        entry<skv::pyramid_kv>("pyramid_kv"),
        entry<skv::h2o>("h2o"),
        entry<skv::chunk_kv>("chunk_kv"),
        entry<skv::quest>("quest"),
    };
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
