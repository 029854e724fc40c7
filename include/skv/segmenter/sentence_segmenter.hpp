//! @file segmenter/sentence_segmenter.hpp
//! Sentences (SentenceKV, arXiv 2504.00970 §3.1): a sentence ends right after, and includes, a boundary token.
//!
//! The boundary set is a list of token ids, given explicitly or derived from a vocabulary with
//! `sentence_boundaries()`, which marks every token whose text ends a sentence — including merged BPE tokens such as
//! `."` or `.\n` that an exact-id rule (the official code's) misses. Optional length limits keep long unpunctuated
//! text (code, lists) in useful units: `max_length` splits longer runs, `min_length` merges shorter sentences into
//! the next one.
#pragma once

#include <skv/error.hpp>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

SKV_NAMESPACE_BEGIN

//! True when `text` (a token's decoded UTF-8 text) ends a sentence: after dropping trailing whitespace and closing
//! quotes or brackets it ends with `.`, `!`, `?`, `…`, `。`, `！` or `？`; or it ends with a blank line (`\n\n`).
inline bool ends_sentence(std::string_view text) {
  auto ends_with = [](std::string_view s, std::string_view tail) {
    return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
  };
  // a paragraph break: two newlines, possibly with spaces or tabs between and after them
  {
    std::size_t i = text.size(), newlines = 0;
    while (i > 0 && (text[i - 1] == ' ' || text[i - 1] == '\t' || text[i - 1] == '\r' || text[i - 1] == '\n')) {
      newlines += text[i - 1] == '\n';
      --i;
    }
    if (newlines >= 2) return true;
  }
  static constexpr std::string_view closers[] = {" ",
                                                 "\t",
                                                 "\n",
                                                 "\r",
                                                 "\"",
                                                 "'",
                                                 ")",
                                                 "]",
                                                 "}",
                                                 "\xE2\x80\x9D" /* ” */,
                                                 "\xE2\x80\x99" /* ’ */,
                                                 "\xC2\xBB" /* » */,
                                                 "\xE3\x80\x8D" /* 」 */,
                                                 "\xE3\x80\x8F" /* 』 */,
                                                 "\xEF\xBC\x89" /* ） */};
  for (bool stripped = true; stripped && !text.empty();) {
    stripped = false;
    for (auto c : closers)
      if (ends_with(text, c)) {
        text.remove_suffix(c.size());
        stripped = true;
        break;
      }
  }
  static constexpr std::string_view enders[] = {
      ".", "!", "?", "\xE2\x80\xA6" /* … */, "\xE3\x80\x82" /* 。 */, "\xEF\xBC\x81" /* ！ */, "\xEF\xBC\x9F" /* ？ */};
  for (auto e : enders)
    if (ends_with(text, e)) return true;
  return false;
}

//! The ids of every token in `vocab` (decoded token texts, indexed by id) that ends a sentence.
inline std::vector<std::int32_t> sentence_boundaries(std::span<const std::string> vocab) {
  std::vector<std::int32_t> ids;
  for (std::size_t i = 0; i < vocab.size(); ++i)
    if (ends_sentence(vocab[i])) ids.push_back(std::int32_t(i));
  return ids;
}

//! Closes a segment after a boundary token (with optional length limits).
struct sentence_segmenter {
  struct options {
    std::vector<std::int32_t> boundaries; //!< token ids that end a sentence (required unless max_length > 0)
    int max_length = 0;                   //!< > 0: a run this long closes even without a boundary (off: 0)
    int min_length = 0;                   //!< > 0: a boundary closes only a sentence at least this long (off: 0)
  };

  sentence_segmenter() = default;
  explicit sentence_segmenter(const options& o) : o_(o) { std::sort(o_.boundaries.begin(), o_.boundaries.end()); }

  bool is_boundary(std::int32_t id) const { return std::binary_search(o_.boundaries.begin(), o_.boundaries.end(), id); }
  bool closes(std::int32_t id, std::int64_t length) const {
    if (o_.max_length > 0 && length >= o_.max_length) return true;
    return is_boundary(id) && length >= o_.min_length;
  }
  //! Every token may end a sentence, unless `min_length` says otherwise.
  std::int64_t max_segments(std::int64_t max_tokens) const {
    return o_.min_length > 1 ? (max_tokens + o_.min_length - 1) / o_.min_length : max_tokens;
  }
  void validate() const {
    constexpr const char* where = "skv::sentence_segmenter";
    detail::require(!o_.boundaries.empty() || o_.max_length > 0, where, "boundaries", "empty",
                    "at least one boundary token id (see skv::sentence_boundaries), or max_length > 0");
    detail::require(o_.max_length >= 0, where, "max_length", o_.max_length, ">= 0 (0 = off)");
    detail::require(o_.min_length >= 0, where, "min_length", o_.min_length, ">= 0 (0 = off)");
    detail::require(o_.max_length == 0 || o_.min_length <= o_.max_length, where, "min_length", o_.min_length,
                    "<= max_length (" + std::to_string(o_.max_length) + ")");
    for (auto id : o_.boundaries) detail::require(id >= 0, where, "boundaries[i]", id, "token ids >= 0");
  }

private:
  options o_;
};

SKV_NAMESPACE_END
