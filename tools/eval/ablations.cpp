// Ablation variants for skv-eval: each is a preset of <skv/presets.hpp> with one slot's type or one option changed,
// so that a row of the results isolates that change. They are not library presets (yet): they live here until the
// data says which should become one.

#include <skv/presets.hpp>

#include "registry.hpp"
#include "registry_impl.hpp"

namespace skv::eval {

namespace {

//! SentenceKV without the pre-filter, each sentence summarized by its element-wise key bounds (two vectors, Quest's
//! upper-bound score) instead of the mean key.
template <skv::storage_type T>
using sentence_kv_bounds =
    skv::kv_cache<skv::sentence_segmenter, skv::minmax_key_summarizer,
                  skv::composed_selector<skv::keep_all, skv::segment_topk<skv::sentence_kv_choice>>,
                  skv::host_offloader, T>;

//! `sentence_kv_lossless` before cross-layer guidance became its default: every layer ranks by its own mean keys.
//! The ablation rows `sentence_kv_lossless+...` measured before then are variants of this type, and stay so.
template <skv::storage_type T>
using lossless_unguided =
    skv::kv_cache<skv::sentence_segmenter, skv::mean_key_summarizer,
                  skv::composed_selector<skv::keep_all, skv::segment_topk<skv::sentence_kv_choice>>,
                  skv::host_offloader, T>;

//! SentenceKV without the pre-filter, ranking the sentences first by the mean key projected onto the prompt's
//! dominant subspace (rank head_dim / 4) and scoring exactly only those that fill twice the budget: the
//! approximate pre-screen that makes the step flat in the context (docs/policies.md).
template <skv::storage_type T>
using sentence_kv_lossless_prescreen =
    skv::kv_cache<skv::sentence_segmenter, skv::projected_mean_key_summarizer<>,
                  skv::composed_selector<skv::keep_all, skv::segment_topk<skv::sentence_kv_choice>>,
                  skv::host_offloader, T>;

template <template <class> class Cache, class Tweak>
preset_info variant_of(std::string name, Tweak tweak) {
  using options = typename Cache<float>::options;
  preset_info p;
  p.name = std::move(name);
  p.has_budget = true;
  p.default_budget = options{}.selector.budget;
  p.needs_boundaries = requires(options o) { o.segmenter.boundaries; };
  p.make = [tweak](const skv::model_shape& shape, const cache_config& c) {
    if (c.dtype == kv_dtype::f32) return detail::build<Cache<float>>(shape, c, tweak);
    return detail::build<Cache<skv::bfloat16>>(shape, c, tweak);
  };
  return p;
}

template <class O>
void current_query(O& o) {
  o.selector.choice.query = skv::query_mode::current;
}
template <class O>
void blend_query(O& o) {
  o.selector.choice.query = skv::query_mode::blend;
}
template <int N, class O>
void dense(O& o) {
  o.selector.choice.dense_layers = N;
}
template <int N, class O>
void heavy(O& o) {
  o.selector.choice.heavy = N;
}
template <int N, class O>
void current_early(O& o) {
  o.selector.choice.current_layers = N;
}
template <int N, class O>
void warmup(O& o) {
  o.selector.choice.warmup = N;
}
template <int N, class O>
void pyramid(O& o) {
  o.selector.choice.pyramid_beta = N;
}
//! Sentences longer than N tokens split into pieces of N, each with its own mean key (more summary vectors for long
//! sentences; the pieces are ranked and taken independently).
template <int N, class O>
void split_long(O& o) {
  o.segmenter.max_length = N;
}
//! Cross-layer guidance: layers [0, N) rank sentences by layer G's estimated attention shares (-1: automatic).
template <int G, int N, class O>
void guide(O& o) {
  o.selector.choice.guide_layer = G;
  o.selector.choice.guided_layers = N;
}
template <class O>
void whole_sentences(O& o) {
  o.selector.retention.unit = skv::granularity::segment;
}
template <class O>
void whole(O& o) {
  o.selector.choice.whole_segments = true;
}
template <class O>
void unchanged(O&) {}
//! The pre-screen at every number of sentences (its default starts at 256 per KV head, past an 8K context).
template <class O>
void prescreen_always(O& o) {
  o.selector.choice.sketch_rows = 0;
}

} // namespace

const std::vector<preset_info>& ablations() {
  static const std::vector<preset_info> all = [] {
    std::vector<preset_info> v;
    v.push_back(
        variant_of<lossless_unguided>("sentence_kv_lossless+current", [](auto& o) { current_query(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+blend", [](auto& o) { blend_query(o); }));
    v.push_back(variant_of<sentence_kv_bounds>("sentence_kv_bounds+blend", [](auto& o) { blend_query(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+whole", [](auto& o) { whole(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+whole+blend", [](auto& o) {
      whole(o);
      blend_query(o);
    }));
    v.push_back(variant_of<skv::sentence_kv>("sentence_kv+whole", [](auto& o) { whole(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+dense2", [](auto& o) { dense<2>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+dense8", [](auto& o) { dense<8>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+heavy16", [](auto& o) { heavy<16>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+heavy32", [](auto& o) { heavy<32>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+heavy64", [](auto& o) { heavy<64>(o); }));
    v.push_back(variant_of<skv::sentence_kv>("sentence_kv+heavy32", [](auto& o) { heavy<32>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+current8",
                                                      [](auto& o) { current_early<8>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+current8+heavy32", [](auto& o) {
      current_early<8>(o);
      heavy<32>(o);
    }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+warmup16", [](auto& o) { warmup<16>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+warmup32", [](auto& o) { warmup<32>(o); }));
    v.push_back(variant_of<skv::sentence_kv>("sentence_kv+warmup32", [](auto& o) { warmup<32>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+pyramid2", [](auto& o) { pyramid<2>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+pyramid5", [](auto& o) { pyramid<5>(o); }));
    v.push_back(
        variant_of<lossless_unguided>("sentence_kv_lossless+pyramid20", [](auto& o) { pyramid<20>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+pyramid5+warmup32", [](auto& o) {
      pyramid<5>(o);
      warmup<32>(o);
    }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+max16", [](auto& o) { split_long<16>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless+max32", [](auto& o) { split_long<32>(o); }));
    v.push_back(variant_of<lossless_unguided>("sentence_kv_lossless-guide", [](auto& o) { unchanged(o); }));
    v.push_back(
        variant_of<skv::sentence_kv_lossless>("sentence_kv_lossless+guide20x8", [](auto& o) { guide<20, 8>(o); }));
    v.push_back(
        variant_of<skv::sentence_kv_lossless>("sentence_kv_lossless+guide12x8", [](auto& o) { guide<12, 8>(o); }));
    v.push_back(
        variant_of<skv::sentence_kv_lossless>("sentence_kv_lossless+guide26x15", [](auto& o) { guide<26, 15>(o); }));
    v.push_back(variant_of<skv::sentence_kv_lossless>("sentence_kv_lossless+guide20x30",
                                                      [](auto& o) { guide<20, 30>(o); }));
    v.push_back(variant_of<skv::sentence_kv>("sentence_kv+guide", [](auto& o) { guide<-1, -1>(o); }));
    v.push_back(variant_of<skv::sentence_kv>("sentence_kv+current", [](auto& o) { current_query(o); }));
    v.push_back(variant_of<skv::sentence_kv>("sentence_kv+sentences", [](auto& o) { whole_sentences(o); }));
    v.push_back(variant_of<sentence_kv_bounds>("sentence_kv_bounds", [](auto& o) { unchanged(o); }));
    v.push_back(variant_of<sentence_kv_bounds>("sentence_kv_bounds+current", [](auto& o) { current_query(o); }));
    v.push_back(variant_of<sentence_kv_lossless_prescreen>("sentence_kv_lossless+prescreen",
                                                           [](auto& o) { prescreen_always(o); }));
    return v;
  }();
  return all;
}

} // namespace skv::eval
