//! @file summarizer/no_summarizer.hpp
//! No summary: for selectors that never rank segments (full attention, StreamingLLM, SnapKV, H2O).
#pragma once

#include <skv/config.hpp>

SKV_NAMESPACE_BEGIN

//! Makes no summary (`vectors == 0`): the cache then keeps no segment table.
struct no_summarizer {
  static constexpr int vectors = 0;
  template <class T, class KeyRow>
  SKV_HOST_DEVICE static void summarize(KeyRow, int, int, T*) {}
  template <class T>
  SKV_HOST_DEVICE static float score(const float*, int, int, const T*) {
    return 0.f;
  }
};

SKV_NAMESPACE_END
