//! @file presets.hpp
//! The published methods as compositions of the four slots. Each name is also what the tools accept.
#pragma once

#include <skv/kv_cache.hpp>
#include <skv/offloader/device_offloader.hpp>
#include <skv/offloader/host_offloader.hpp>
#include <skv/segmenter/fixed_segmenter.hpp>
#include <skv/segmenter/sentence_segmenter.hpp>
#include <skv/segmenter/token_segmenter.hpp>
#include <skv/selector/all_selector.hpp>
#include <skv/selector/semantic_topk_selector.hpp>
#include <skv/selector/streaming_selector.hpp>
#include <skv/summarizer/mean_key_summarizer.hpp>
#include <skv/summarizer/minmax_key_summarizer.hpp>
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

//! SentenceKV (arXiv 2504.00970) with the official defaults: τ = 1024, pre-filter r = 3 / window 32 / kernel 7,
//! sink 32, recent 32, fallback while the open sentence has <= 1 query. Set `options.segmenter.boundaries`
//! (e.g. from `skv::sentence_boundaries(vocab)`).
template <storage_type T = bfloat16>
using sentence_kv = kv_cache<sentence_segmenter,                           // sentences
                             mean_key_summarizer,                          // semantic vector = mean key
                             semantic_topk_selector<sentence_kv_defaults>, // top sentences by q̄ · vector
                             host_offloader,                               // token KV on the slow tier
                             T>;

//! SentenceKV with the pre-filter off: every prompt token stays on the slow tier and can be recalled.
template <storage_type T = bfloat16>
using sentence_kv_lossless = kv_cache<sentence_segmenter,                                    // sentences
                                      mean_key_summarizer,                                   // mean key
                                      semantic_topk_selector<sentence_kv_lossless_defaults>, // no pre-filter
                                      host_offloader,                                        // slow tier
                                      T>;

//! SentenceKV as the paper's figure draws it: no sink, no recent window, no fallback (for ablation).
template <storage_type T = bfloat16>
using sentence_kv_paper = kv_cache<sentence_segmenter,                                 // sentences
                                   mean_key_summarizer,                                // mean key
                                   semantic_topk_selector<sentence_kv_paper_defaults>, // selection only
                                   host_offloader,                                     // slow tier
                                   T>;

SKV_NAMESPACE_END
