//! @file segmenter/token_segmenter.hpp
//! Every token is its own segment (SnapKV, H2O, StreamingLLM, full attention).
#pragma once

#include <skv/config.hpp>

#include <cstdint>

SKV_NAMESPACE_BEGIN

//! Closes a segment after every token.
struct token_segmenter {
  struct options {};
  token_segmenter() = default;
  explicit token_segmenter(const options&) {}
  bool closes(std::int32_t, std::int64_t) const { return true; }
  void validate() const {}
};

SKV_NAMESPACE_END
