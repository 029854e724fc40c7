#pragma once
//! \file generators.hpp
//! RULER-style task generators (Hsieh et al., 2024) for skv-eval: each builds one item of about `length` tokens
//! from any haystack text and a seed, so a fresh, never-seen set is one new seed or text away.
//!
//! An item is a document (`context`: the haystack with the task's facts inserted, after a short instruction) and a
//! `question` asked about it. skv-eval runs every item under two protocols over the same tokens: **prefill** (the
//! question is part of the prompt, as RULER does) and **question_after** (the document is prefilled, the question
//! arrives afterwards through the decode path — a chat about a long document, where prefill-time compression cannot
//! know what will be asked).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "llama/tokenizer.hpp"

namespace skv::eval {

//! One generated item.
struct task_item {
  std::string task;
  std::string instruction;          //!< before the document, in the same user turn
  std::string context;              //!< the document (haystack + inserted facts)
  std::string question;             //!< asked after the document
  std::string answer_prefix;        //!< starts the assistant's answer
  std::vector<std::string> outputs; //!< expected strings; the score is the share of them found in the answer
  int max_new = 32;                 //!< tokens to generate
  double depth = 0;                 //!< where the first fact sits in the document, as a share of it
};

//! What to generate.
struct generator_options {
  int length = 4096;  //!< target prompt length in tokens (template, document and question)
  double depth = 0.5; //!< depth of the (first) inserted fact in [0, 1]
  std::uint32_t seed = 1;
};

//! Item `index` of a set of `items` (skv-eval's numbering): depth `depth` if given (>= 0), else spread evenly over
//! the set (index / (items - 1)); its seed drawn from (set_seed, index), so any item can be made alone.
generator_options item_options(int length, std::uint32_t set_seed, int index, int items, double depth = -1);

//! The generated tasks: niah_single, niah_multikey, niah_multivalue, niah_multiquery, vt, cwe, fwe, qa_cloze.
const std::vector<std::string>& generated_task_names();
//! True if `name` is one of generated_task_names().
bool is_generated_task(std::string_view name);

//! A haystack split into sentences, with each sentence's token count (computed once, reused for every item).
class haystack {
public:
  //! Splits `text` at sentence ends (". ", "! ", "? ", line breaks) and counts each sentence's tokens.
  //! Throws std::invalid_argument if it holds fewer than 8 sentences.
  haystack(const llama::tokenizer& tok, std::string_view text);
  std::size_t size() const { return sentences_.size(); }
  const std::string& sentence(std::size_t i) const { return sentences_[i]; }
  int tokens(std::size_t i) const { return tokens_[i]; }
  //! Distinct lower-case alphabetic words of 4 to 10 letters, in order of first appearance (for cwe).
  const std::vector<std::string>& words() const { return words_; }

private:
  std::vector<std::string> sentences_;
  std::vector<int> tokens_;
  std::vector<std::string> words_;
};

//! Builds one item of task `name`. Deterministic in (haystack, tokenizer, name, options). Throws
//! std::invalid_argument naming the argument for an unknown task, a depth outside [0, 1] or a length the task
//! cannot be made in (below 256 tokens).
task_item generate_item(const llama::tokenizer& tok, const haystack& hay, std::string_view name,
                        const generator_options& o);

//! The item as ChatML token ids, split where the document ends: `ids[0, n_context)` is the system turn, the
//! instruction and the document; `ids[n_context, end)` the question, the end of the user turn and the start of the
//! answer. Both halves are tokenized separately, so both protocols see exactly these tokens.
struct item_tokens {
  std::vector<std::int32_t> ids;
  int n_context = 0;
};
item_tokens tokenize_item(const llama::tokenizer& tok, const task_item& item, std::string_view system);

//! Lower case, every run of characters other than letters and digits replaced by one space, trimmed.
std::string normalize_answer(std::string_view s);
//! The share of `outputs` that occur in `answer` (both normalized); 0 if there are none.
double score_answer(std::string_view answer, const std::vector<std::string>& outputs);

//! Wilson score interval for `successes` of `n` at z = 1.96 (95%); {0, 1} when n == 0.
struct interval {
  double lo = 0, hi = 1;
};
interval wilson_interval(std::int64_t successes, std::int64_t n, double z = 1.959963984540054);

} // namespace skv::eval
