// A policy written outside the library (examples/04_custom_policy.hpp) passes through the generic cache: composed
// with the built-in slots, it matches a naive reference of its own rule step by step.
#include <doctest/doctest.h>

#include "04_custom_policy.hpp"
#include "sentence_harness.hpp"

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace custom_policy_test {

using namespace sentence_harness;

//! The rule of mean_and_peak_summarizer, naively in double: max(q . mean key, q . largest-norm key).
double mean_or_peak(const std::vector<const float*>& keys, const double* q, int dim) {
  std::vector<double> mean(dim, 0.0);
  std::size_t peak = 0;
  double best = -1;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    double norm = 0;
    for (int d = 0; d < dim; ++d) {
      mean[d] += keys[i][d] / double(keys.size());
      norm += double(keys[i][d]) * keys[i][d];
    }
    if (norm > best) best = norm, peak = i;
  }
  double a = 0, b = 0;
  for (int d = 0; d < dim; ++d) {
    a += q[d] * mean[d];
    b += q[d] * keys[peak][d];
  }
  return std::max(a, b);
}

TEST_CASE("a user-written summarizer composes with the built-in slots and matches its naive reference") {
  using C = skv::kv_cache<skv::sentence_segmenter, my_policies::mean_and_peak_summarizer,
                          skv::composed_selector<skv::keep_all, skv::segment_topk<>>, skv::host_offloader, float>;
  static_assert(C::tracks_segments && my_policies::mean_and_peak_summarizer::vectors == 2);
  auto o = small_options<C>();
  auto ro = reference_options(o.selector, o.segmenter);
  ro.score = mean_or_peak;
  scenario sc;
  sc.lengths = {600, 250};
  run_against_reference<C>(o, sc, true, ro);
  SUBCASE("and with the pre-filter and fixed chunks instead") {
    using F =
        skv::kv_cache<skv::fixed_segmenter<>, my_policies::mean_and_peak_summarizer,
                      skv::composed_selector<skv::keep_window_top<skv::sentence_kv_prefilter>, skv::segment_topk<>>,
                      skv::host_offloader, float>;
    F::options fo;
    fo.segmenter.size = 12;
    fo.selector.budget = 96;
    fo.selector.choice.sink = fo.selector.choice.recent = 8;
    auto fro = reference_options(fo.selector, skv::sentence_segmenter::options{});
    fro.fixed = 12;
    fro.score = mean_or_peak;
    run_against_reference<F>(fo, sc, true, fro);
  }
}

} // namespace custom_policy_test
