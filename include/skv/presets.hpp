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
#include <skv/selector/heavy_hitter_selector.hpp>
#include <skv/selector/semantic_topk_selector.hpp>
#include <skv/selector/streaming_selector.hpp>
#include <skv/selector/window_score_selector.hpp>
#include <skv/summarizer/mean_key_summarizer.hpp>
#include <skv/summarizer/minmax_key_summarizer.hpp>
#include <skv/summarizer/no_summarizer.hpp>

SKV_NAMESPACE_BEGIN

//! Dense attention over everything, all on the fast tier: the baseline.
template <storage_type T = bfloat16>
using full_kv = kv_cache<token_segmenter,  // every token a segment
                         no_summarizer,    // nothing to rank
                         all_selector,     // retain and attend to all
                         device_offloader, // fast tier only
                         T>;

//! StreamingLLM: attention sinks + recent window, the rest evicted (defaults: sink 4, budget 1024).
template <storage_type T = bfloat16>
using streaming_llm = kv_cache<token_segmenter,    // every token a segment
                               no_summarizer,      // nothing to rank
                               streaming_selector, // sink + recent
                               device_offloader,   // fast tier, evicting
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

//! SnapKV (arXiv 2404.14469): the top `budget - 32` prompt tokens by pooled observation-window attention (window 32,
//! max-pool 7) per KV head, plus the window; the rest evicted at prefill; decode tokens appended.
template <storage_type T = bfloat16>
using snap_kv = kv_cache<token_segmenter,                         // every token a segment
                         no_summarizer,                           // scored at prefill only
                         window_score_selector<snap_kv_defaults>, // window attention, pooled
                         device_offloader,                        // fast tier, evicting
                         T>;

//! PyramidKV (arXiv 2406.02069): SnapKV with per-layer budgets falling linearly with depth (β = 20), same mean.
template <storage_type T = bfloat16>
using pyramid_kv = kv_cache<token_segmenter,                            // every token a segment
                            no_summarizer,                              // scored at prefill only
                            window_score_selector<pyramid_kv_defaults>, // pyramid budgets
                            device_offloader,                           // fast tier, evicting
                            T>;

//! H2O (arXiv 2306.14048): heavy hitters (50% of the budget) + recent tokens (50%), eviction every step.
template <storage_type T = bfloat16>
using h2o = kv_cache<token_segmenter,       // every token a segment
                     no_summarizer,         // scores accumulate in the selector
                     heavy_hitter_selector, // accumulated attention
                     device_offloader,      // fast tier, evicting
                     T>;

//! ChunkKV (arXiv 2502.00299): chunks of 10 tokens ranked by summed window attention, whole chunks kept, kept
//! positions reused by pairs of adjacent layers.
template <storage_type T = bfloat16>
using chunk_kv = kv_cache<fixed_segmenter<10>,                      // chunks of 10
                          no_summarizer,                            // scored at prefill only
                          window_score_selector<chunk_kv_defaults>, // chunk scores, layer reuse
                          device_offloader,                         // fast tier, evicting
                          T>;

//! Quest (arXiv 2406.10774): pages of 16 with min/max key bounds, top pages per step by the current query, first
//! two layers dense, nothing evicted.
template <storage_type T = bfloat16>
using quest = kv_cache<fixed_segmenter<16>,                    // pages of 16
                       minmax_key_summarizer,                  // element-wise bounds
                       semantic_topk_selector<quest_defaults>, // upper-bound score, current query
                       device_offloader,                       // everything on the fast tier
                       T>;

SKV_NAMESPACE_END
