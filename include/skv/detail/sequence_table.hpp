//! @file detail/sequence_table.hpp
//! Host bookkeeping of a layer's sequences (segmentation, the open segment) and the small per-step parameter
//! block the device reads, staged in pinned memory and copied on the engine's stream: the decode path never reads
//! anything back from the device.
#pragma once

#include <skv/detail/ragged.hpp>
#include <skv/policy.hpp>

#include <cstdint>
#include <span>
#include <vector>

SKV_NAMESPACE_BEGIN
namespace detail {

class sequence_table {
public:
  //! Per-sequence fields of the staged block.
  enum field : int {
    position,      //!< position of this step's token
    reset,         //!< 1: the open segment's query sum restarts with this query
    partial_count, //!< queries in the open segment, this one included
    closed_begin,  //!< first position of the segment this token closed (-1: none)
    partial_begin, //!< first position of the open segment after this step
    fields
  };

  explicit sequence_table(const tier_resources& mem) {
    skv::bind(host_, mem.of(tier::slow));
    skv::bind(keep_host_, mem.of(tier::slow));
    skv::bind(dev_, mem.of(tier::fast));
    skv::bind(keep_dev_, mem.of(tier::fast));
  }

  void reserve(int max_batch, int max_pairs, std::int64_t max_segments) {
    reserved_segments_ = max_segments;
    seqs_.reserve(max_batch);
    closed_.reserve(max_batch);
    ensure_size(host_, std::size_t(max_batch) * fields);
    ensure_size(dev_, host_.size());
    ensure_size(keep_host_, std::size_t(max_pairs));
    ensure_size(keep_dev_, keep_host_.size());
    for (auto& s : seqs_) s.segment_begins.reserve(max_segments);
  }

  //! Prefill: segments every prompt with `seg` (the tail closes the last segment); stages `partial_begin`.
  template <class Seg>
  void segment_prompt(const Seg& seg, std::span<const std::int32_t> indptr, std::span<const std::int32_t> ids,
                      int kv_heads, stream_t s) {
    const int batch = int(indptr.size()) - 1;
    seqs_.resize(batch);
    closed_.assign(batch, 0);
    ensure_size(host_, std::size_t(batch) * fields);
    ensure_size(dev_, host_.size());
    ensure_size(keep_host_, std::size_t(batch) * kv_heads);
    ensure_size(keep_dev_, keep_host_.size());
    for (int b = 0; b < batch; ++b) {
      auto& q = seqs_[b];
      const std::int32_t n = indptr[b + 1] - indptr[b];
      q.segment_begins.clear();
      q.segment_begins.reserve(std::size_t(std::max<std::int64_t>(reserved_segments_, 16)));
      std::int64_t open = 0;
      for (std::int32_t t = 0; t < n; ++t) {
        if (open == 0) q.segment_begins.push_back(t);
        ++open;
        if (seg.closes(ids[indptr[b] + t], open)) open = 0;
      }
      q.n_tokens = q.partial_begin = q.prompt_tokens = n;
      q.partial_queries = 0;
      q.closed_last = false;
      at(partial_begin, b) = n;
    }
    upload(s);
  }

  //! Decode: what this step's tokens do, written to the staging block without changing the host state (so that a
  //! later check can still fail cleanly). Returns whether any sequence closes a segment.
  template <class Seg>
  bool preview(const Seg& seg, std::span<const std::int32_t> ids) {
    bool any = false;
    for (std::size_t b = 0; b < seqs_.size(); ++b) {
      const auto& q = seqs_[b];
      const bool restart = q.closed_last || q.partial_queries == 0;
      const bool closes = seg.closes(ids[b], q.n_tokens + 1 - q.partial_begin);
      at(position, b) = std::int32_t(q.n_tokens);
      at(reset, b) = restart;
      at(partial_count, b) = restart ? 1 : q.partial_queries + 1;
      at(closed_begin, b) = closes ? std::int32_t(q.partial_begin) : -1;
      at(partial_begin, b) = std::int32_t(closes ? q.n_tokens + 1 : q.partial_begin);
      closed_[b] = closes;
      any |= closes;
    }
    return any;
  }
  //! Applies the previewed step to the host state.
  void commit() {
    for (std::size_t b = 0; b < seqs_.size(); ++b) {
      auto& q = seqs_[b];
      if (closed_[b]) q.segment_begins.push_back(std::int32_t(q.partial_begin));
      q.partial_queries = at(partial_count, b);
      q.partial_begin = at(partial_begin, b);
      q.closed_last = closed_[b] != 0;
      ++q.n_tokens;
    }
  }
  //! Copies the staged block to the device, ordered on `s`.
  void upload(stream_t s) {
    copy_bytes(raw(dev_), raw(host_), std::size_t(fields) * seqs_.size() * sizeof(std::int32_t), s);
  }

  //! Staging for the lengths an eviction keeps, per pair.
  std::int32_t* keep_len_host() { return raw(keep_host_); }
  const std::int32_t* keep_len_device() const { return raw(keep_dev_); }
  void upload_keep(int pairs, stream_t s) {
    copy_bytes(raw(keep_dev_), raw(keep_host_), std::size_t(pairs) * sizeof(std::int32_t), s);
  }

  const std::int32_t* device(field f) const { return raw(dev_) + std::size_t(f) * seqs_.size(); }
  std::span<const std::uint8_t> closed() const { return closed_; }
  std::span<const sequence_state> seqs() const { return seqs_; }
  int batch() const { return int(seqs_.size()); }
  std::size_t fast_bytes() const { return allocated_bytes(dev_) + allocated_bytes(keep_dev_); }

private:
  std::int32_t& at(field f, std::size_t b) { return host_[std::size_t(f) * seqs_.size() + b]; }

  std::vector<sequence_state> seqs_;
  std::vector<std::uint8_t> closed_;
  slow_vector<std::int32_t> host_, keep_host_; //!< pinned on CUDA, so copies do not wait on the host
  fast_vector<std::int32_t> dev_, keep_dev_;
  std::int64_t reserved_segments_ = 0;
};

} // namespace detail
SKV_NAMESPACE_END
