#pragma once
//! \file tasks.hpp
//! The pieces of skv-eval's tasks that are worth testing on their own: prompt conversion (Llama-3 chat ->
//! ChatML), RULER jsonl reading, passkey prompts, the context check, and the evaluator that runs one prompt through
//! several cache policies from a single prefill.

#include "llama/model.hpp"
#include "llama/tokenizer.hpp"
#include "registry.hpp"
#include "skv_backend.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace skv::eval {

//! `s` without leading and trailing spaces, tabs and line breaks.
std::string_view trim(std::string_view s);

//! The whole file as bytes. Throws std::runtime_error naming the path if it cannot be opened.
std::string read_text_file(const std::filesystem::path& path);

//! A prompt written in the Llama-3 chat format, split into its turns.
struct chat_turns {
    std::string system;        //!< "" if the prompt has no system turn
    std::string user;
    std::string answer_prefix; //!< text after the final assistant header (the start of the answer), may be ""
};

//! Splits "<|begin_of_text|><|start_header_id|>ROLE<|end_header_id|>TEXT<|eot_id|>...<|start_header_id|>assistant
//! <|end_header_id|>PREFIX" into its turns (text trimmed of surrounding whitespace; the prefix of leading
//! whitespace only). Throws std::invalid_argument when there is no user turn or the headers are malformed.
chat_turns parse_llama3_prompt(std::string_view input);

//! The turns in ChatML (llama::chat_ml), the answer prefix starting the assistant turn. The item's own system text
//! is used if it has one, else `default_system`. Encode the result with parse_special.
std::string to_chatml(const chat_turns& turns, std::string_view default_system);

//! One RULER item.
struct niah_item {
    int line = 0;                     //!< 1-based line in the file
    std::int64_t index = 0;           //!< the item's `index` field (its line number - 1 if absent)
    std::string input;                //!< `input`
    std::vector<std::string> outputs; //!< `outputs` (accepted answers)
};

//! Reads a RULER jsonl file (fields `input`: string, `outputs`: non-empty array of strings; `index` optional).
//! A line that is not valid JSON or lacks those fields is reported through `on_error(line, message)` and skipped;
//! blank lines are ignored. Throws std::runtime_error if the file cannot be read.
std::vector<niah_item> read_niah_jsonl(const std::filesystem::path& path,
                                       const std::function<void(int, const std::string&)>& on_error);

//! Thrown when a prompt plus the tokens to generate do not fit the model's context.
class context_error : public std::length_error {
public:
    using std::length_error::length_error;
};

//! Throws context_error naming the sizes when n_prompt + n_new > n_ctx.
void check_context(std::int64_t n_prompt, std::int64_t n_new, std::int64_t n_ctx);

//! A passkey item (Quest / Landmark Attention protocol).
struct passkey_item {
    std::string prompt;
    std::string key;   //!< 5 decimal digits
    double depth = 0;  //!< where the key line sits, as a share of the filler (0: start, 1: end)
};

//! Builds a passkey prompt of about `length` tokens: an instruction, the filler "The grass is green. ... There and
//! back again." repeated, "The pass key is K. Remember it. K is the pass key." at `depth`, and the question
//! "What is the pass key? The pass key is". K is a random 5-digit number drawn from `seed`.
passkey_item make_passkey(const llama::tokenizer& tok, int length, double depth, std::uint32_t seed);

//! The decoded text of every token (control tokens empty), for skv::sentence_boundaries().
std::vector<std::string> decoded_vocab(const llama::tokenizer& tok);

//! Ids that end a generation: EOS, <|im_end|>, <|endoftext|> where present.
std::vector<std::int32_t> stop_ids(const llama::tokenizer& tok, const llama::hparams& hp);

//! A cache policy to evaluate: a preset name and its budget (unset: the preset has none, or its default) — in
//! tokens, or as a fraction of each prompt (`budget_fraction`: τ = round(fraction x prompt tokens)).
struct variant {
    std::string policy;
    std::optional<int> budget;
    std::optional<double> budget_fraction;
    //! τ for a prompt of `n_prompt` tokens (the fraction resolved; at least 1), or unset.
    std::optional<int> budget_for(std::int64_t n_prompt) const;
};

//! The variants for every policy x (budget, then budget fraction); presets without a budget option get one variant
//! with no budget. Throws std::invalid_argument for unknown policy names and fractions outside (0, 1].
std::vector<variant> make_variants(const std::vector<std::string>& policies, const std::vector<int>& budgets,
                                   const std::vector<double>& fractions = {});

//! How an item's question reaches the model (see generators.hpp).
enum class protocol { prefill, question_after };
std::string to_string(protocol p);
//! "prefill" or "question_after" (also "question-after"); throws std::invalid_argument naming the allowed values.
protocol parse_protocol(std::string_view name);

//! Runs prompts through several policies. The prompt's forward pass does not depend on the policy (the engine
//! computes the prompt's attention itself), so it runs once: the first policy's cache is prefilled during it, its
//! Q/K/V are recorded, and every further policy's cache is prefilled from the record before the model is rewound
//! to the end of the prompt. Decoding then goes through each cache in turn.
class evaluator {
public:
    evaluator(llama::model& model, const llama::tokenizer& tok, std::vector<variant> variants, kv_dtype dtype);

    const std::vector<variant>& variants() const { return variants_; }
    skv::model_shape shape() const;
    //! The cache options of `v` for a prompt of `n_prompt` tokens (which resolves a budget fraction).
    cache_config config(const variant& v, std::int64_t n_prompt = 0) const;
    //! Builds every variant's cache once for a prompt of `n_prompt` tokens, so that invalid options fail before any
    //! work (skv::invalid_argument).
    void validate(std::int64_t n_prompt = 0) const;

    //! Called once per variant with its backend (prefilled, model positioned after the prompt) and the prompt's
    //! last logits.
    using visit_fn = std::function<void(std::size_t variant, skv_attention_backend& backend,
                                        const std::vector<float>& prompt_logits)>;
    //! Checks the context (prompt + n_new <= llama.context_length), then runs `prompt` and visits each variant.
    void run(std::span<const std::int32_t> prompt, int n_new, bool track_recall, const visit_fn& visit);
    //! Seconds of the last run()'s shared prefill forward pass.
    double prefill_seconds() const { return prefill_seconds_; }

    //! Greedy decoding from `logits` (the prompt's last): up to `max_new` tokens, stopping before a stop id.
    std::vector<std::int32_t> generate(skv_attention_backend& backend, std::vector<float> logits, int max_new);

    //! One (protocol, variant) run of an item, as run_item() reports it.
    struct stream_result {
        protocol proto;
        std::size_t variant;
        std::optional<int> budget;        //!< τ used (the fraction resolved)
        std::vector<std::int32_t> answer; //!< generated ids, stop id excluded
        std::int64_t decode_steps = 0;    //!< steps through the policy: question (question_after) + answer
        double step_seconds = 0;          //!< seconds in the cache's decode steps
        double fast_bytes = 0, slow_bytes = 0; //!< the cache's ledger at the end
        double group_seconds = 0;         //!< wall seconds of the batch this stream ran in (its own with max_streams 1)
    };
    //! Runs one item under every protocol x variant. One forward pass over all of `ids` (exact causal attention,
    //! per-layer Q/K/V recorded); each stream's cache is then prefilled from the record — all of `ids` for
    //! protocol::prefill, the first `n_context` for protocol::question_after, whose remaining tokens then go one by
    //! one through the policy's decode path (cache.step) — and generates greedily up to `max_new` tokens. Streams
    //! decode in lockstep through model::decode_batch, at most `max_streams` at once (each holds a cache).
    //! Checks the context first (context_error). Returns the streams in order protocol-major.
    std::vector<stream_result> run_item(std::span<const std::int32_t> ids, int n_context, int max_new,
                                        std::span<const protocol> protocols, int max_streams = 16);
    //! Seconds of the last run_item()'s shared forward pass, and of all of it.
    double item_forward_seconds() const { return item_forward_seconds_; }
    double item_seconds() const { return item_seconds_; }

private:
    bool is_stop(std::int32_t id) const { return std::find(stops_.begin(), stops_.end(), id) != stops_.end(); }

    llama::model& model_;
    const llama::tokenizer& tok_;
    std::vector<variant> variants_;
    kv_dtype dtype_;
    std::vector<std::int32_t> boundaries_;
    std::vector<std::int32_t> stops_;
    double prefill_seconds_ = 0;
    double item_forward_seconds_ = 0, item_seconds_ = 0;
};

//! -log softmax(logits)[target], in double.
double token_nll(std::span<const float> logits, std::int32_t target);

} // namespace skv::eval
