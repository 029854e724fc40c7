//! @file presets.hpp
//! The published methods as compositions of the four slots. Each name is also what the tools accept.
#pragma once

#include <skv/kv_cache.hpp>
#include <skv/offloader/device_offloader.hpp>
#include <skv/segmenter/token_segmenter.hpp>
#include <skv/selector/all_selector.hpp>
#include <skv/selector/streaming_selector.hpp>
#include <skv/summarizer/no_summarizer.hpp>

SKV_NAMESPACE_BEGIN

//! Dense attention over everything, all on the fast tier: the baseline.
template <storage_type T = bfloat16>
using full_kv = kv_cache<token_segmenter,   // every token a segment
                         no_summarizer,     // nothing to rank
                         all_selector,      // retain and attend to all
                         device_offloader,  // fast tier only
                         T>;

//! StreamingLLM: attention sinks + recent window, the rest evicted (defaults: sink 4, budget 1024).
template <storage_type T = bfloat16>
using streaming_llm = kv_cache<token_segmenter,     // every token a segment
                               no_summarizer,       // nothing to rank
                               streaming_selector,  // sink + recent
                               device_offloader,    // fast tier, evicting
                               T>;

SKV_NAMESPACE_END
