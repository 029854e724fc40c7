//! @file segmenter/fixed_segmenter.hpp
//! Fixed-size chunks (ChunkKV, arXiv 2502.00299: 10 tokens) or pages (Quest, arXiv 2406.10774: 16 tokens).
#pragma once

#include <skv/error.hpp>

#include <cstdint>

SKV_NAMESPACE_BEGIN

//! Closes a segment every `size` tokens. @tparam DefaultSize the default of `options.size` (ChunkKV: 10, Quest: 16)
template <int DefaultSize = 16>
struct fixed_segmenter {
  struct options {
    int size = DefaultSize; //!< tokens per segment
  };
  fixed_segmenter() = default;
  explicit fixed_segmenter(const options& o) : size_(o.size) {}
  bool closes(std::int32_t, std::int64_t length) const { return length >= size_; }
  std::int64_t max_segments(std::int64_t max_tokens) const { return (max_tokens + size_ - 1) / size_; }
  void validate() const { detail::require(size_ >= 1, "skv::fixed_segmenter", "size", size_, ">= 1"); }

private:
  int size_ = DefaultSize;
};

SKV_NAMESPACE_END
