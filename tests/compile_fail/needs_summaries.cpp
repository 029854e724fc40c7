// Must NOT compile: a selector that ranks segments by their summaries, with a summarizer that makes none.
// tests/CMakeLists.txt checks that the compiler prints the library's static_assert message. With
// -DSKV_CONTROL the same composition uses mean keys and must compile (so the failure is the assert's).
#include <skv/skv.hpp>

#if defined(SKV_CONTROL)
using summarizer = skv::mean_key_summarizer;
#else
using summarizer = skv::no_summarizer;
#endif

using impossible =
    skv::kv_cache<skv::sentence_segmenter, summarizer, skv::composed_selector<skv::keep_all, skv::segment_topk<>>,
                  skv::host_offloader, float>;

int main() {
  impossible cache({1, 8, 2, 64});
  return cache.window();
}
