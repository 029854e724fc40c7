//! @file presets.hpp
//! The published methods as compositions of the four slots (the selector itself a retention plus a choice). Each
//! name is also what the tools accept; `preset_list.hpp` lists them for code that visits every preset.
#pragma once

#include <skv/kv_cache.hpp>
#include <skv/offloader/device_offloader.hpp>
#include <skv/offloader/host_offloader.hpp>
#include <skv/segmenter/fixed_segmenter.hpp>
#include <skv/segmenter/sentence_segmenter.hpp>
#include <skv/segmenter/token_segmenter.hpp>
#include <skv/selector/attend_all.hpp>
#include <skv/selector/composed_selector.hpp>
#include <skv/selector/keep_all.hpp>
#include <skv/selector/keep_heavy_hitters.hpp>
#include <skv/selector/keep_sink_recent.hpp>
#include <skv/selector/keep_window_top.hpp>
#include <skv/selector/segment_topk.hpp>
#include <skv/summarizer/mean_key_summarizer.hpp>
#include <skv/summarizer/minmax_key_summarizer.hpp>
#include <skv/summarizer/no_summarizer.hpp>

SKV_NAMESPACE_BEGIN

//! Dense attention over everything, all on the fast tier: the baseline.
template <storage_type T = bfloat16>
using full_kv = kv_cache<token_segmenter,                         // every token a segment
                         no_summarizer,                           // nothing to rank
                         composed_selector<keep_all, attend_all>, // retain and attend to all
                         device_offloader,                        // fast tier only
                         T>;

//! StreamingLLM: attention sinks + recent window, the rest evicted (defaults: sink 4, budget 1024).
template <storage_type T = bfloat16>
using streaming_llm = kv_cache<token_segmenter,                                 // every token a segment
                               no_summarizer,                                   // nothing to rank
                               composed_selector<keep_sink_recent, attend_all>, // sink + recent
                               device_offloader,                                // fast tier, evicting
                               T>;

//! SentenceKV (arXiv 2504.00970) with the official defaults: τ = 1024, pre-filter r = 3 / window 32 / kernel 7,
//! sink 32, recent 32, fallback while the open sentence has <= 1 query. Set `options.segmenter.boundaries`
//! (e.g. from `skv::sentence_boundaries(vocab)`).
template <storage_type T = bfloat16>
using sentence_kv = kv_cache<sentence_segmenter,                                       // sentences
                             mean_key_summarizer,                                      // semantic vector = mean key
                             composed_selector<keep_window_top<sentence_kv_prefilter>, // r·τ tokens kept
                                               segment_topk<sentence_kv_choice>>,      // top sentences by q̄ · vector
                             host_offloader,                                           // token KV on the slow tier
                             T>;

//! SentenceKV with the pre-filter off: every prompt token stays on the slow tier and can be recalled. skv's rule
//! beside the official ones: the first half of the layers rank sentences by layer 2 * layers / 3's estimated
//! attention (cross-layer guidance; `options.selector.choice.guided_layers = 0` turns it off).
template <storage_type T = bfloat16>
using sentence_kv_lossless = kv_cache<sentence_segmenter,                                           // sentences
                                      mean_key_summarizer,                                          // mean key
                                      composed_selector<keep_all,                                   // no pre-filter
                                                        segment_topk<sentence_kv_lossless_choice>>, // top sentences
                                      host_offloader,                                               // slow tier
                                      T>;

//! SentenceKV as the paper's figure draws it: no sink, no recent window, no fallback (for ablation).
template <storage_type T = bfloat16>
using sentence_kv_paper = kv_cache<sentence_segmenter,                                        // sentences
                                   mean_key_summarizer,                                       // mean key
                                   composed_selector<keep_window_top<sentence_kv_prefilter>,  // r·τ tokens kept
                                                     segment_topk<sentence_kv_paper_choice>>, // selection only
                                   host_offloader,                                            // slow tier
                                   T>;

//! SnapKV (arXiv 2404.14469): the top `budget - 32` prompt tokens by pooled observation-window attention (window 32,
//! max-pool 7) per KV head, plus the window; the rest evicted at prefill; decode tokens appended.
template <storage_type T = bfloat16>
using snap_kv = kv_cache<token_segmenter,                                                // every token a segment
                         no_summarizer,                                                  // scored at prefill only
                         composed_selector<keep_window_top<snap_kv_window>, attend_all>, // window attention, pooled
                         device_offloader,                                               // fast tier, evicting
                         T>;

//! PyramidKV (arXiv 2406.02069): SnapKV with per-layer budgets falling linearly with depth (β = 20), same mean.
template <storage_type T = bfloat16>
using pyramid_kv = kv_cache<token_segmenter,                                                   // every token
                            no_summarizer,                                                     // prefill scoring
                            composed_selector<keep_window_top<pyramid_kv_window>, attend_all>, // pyramid budgets
                            device_offloader,                                                  // evicting
                            T>;

//! H2O (arXiv 2306.14048): heavy hitters (50% of the budget) + recent tokens (50%), eviction every step.
template <storage_type T = bfloat16>
using h2o = kv_cache<token_segmenter,                                   // every token a segment
                     no_summarizer,                                     // scores accumulate in the retention
                     composed_selector<keep_heavy_hitters, attend_all>, // accumulated attention
                     device_offloader,                                  // fast tier, evicting
                     T>;

//! ChunkKV (arXiv 2502.00299): chunks of 10 tokens ranked by summed window attention, whole chunks kept, kept
//! positions reused by pairs of adjacent layers.
template <storage_type T = bfloat16>
using chunk_kv = kv_cache<fixed_segmenter<10>,                                             // chunks of 10
                          no_summarizer,                                                   // prefill scoring
                          composed_selector<keep_window_top<chunk_kv_window>, attend_all>, // chunk scores, reuse
                          device_offloader,                                                // evicting
                          T>;

//! Quest (arXiv 2406.10774): pages of 16 with min/max key bounds, top pages per step by the current query, first
//! two layers dense, nothing evicted.
template <storage_type T = bfloat16>
using quest = kv_cache<fixed_segmenter<16>,                                     // pages of 16
                       minmax_key_summarizer,                                   // element-wise bounds
                       composed_selector<keep_all, segment_topk<quest_choice>>, // upper-bound score, current query
                       device_offloader,                                        // everything on the fast tier
                       T>;

SKV_NAMESPACE_END
