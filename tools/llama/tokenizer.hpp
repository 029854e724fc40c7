#pragma once
//! \file tokenizer.hpp
//! Byte-level BPE tokenizer (GPT-2 style) built from GGUF `tokenizer.ggml.*` metadata.

#include "gguf.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace skv::llama {

//! GGUF token types (`tokenizer.ggml.token_type`).
enum class token_type : int32_t {
    undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6,
};

//! Byte-level BPE tokenizer. Supports `tokenizer.ggml.model` "gpt2" with the
//! "smollm" pre-tokenizer (every \p{N} split off, then the GPT-2 regex) and the
//! plain "gpt2" pre-tokenizer. Immutable after construction; encode/decode are
//! thread-safe.
class tokenizer {
public:
    //! Build from a parsed GGUF file. Throws std::runtime_error for missing
    //! metadata or an unsupported tokenizer model / pre-tokenizer.
    static tokenizer from_gguf(const gguf_file& f);

    tokenizer(tokenizer&&) noexcept;
    tokenizer& operator=(tokenizer&&) noexcept;
    ~tokenizer();

    //! Encode UTF-8 text (no BOS is added). With `parse_special`, control tokens
    //! such as "<|im_start|>" written in the text become their single ids;
    //! otherwise they are tokenized as plain text.
    std::vector<int32_t> encode(std::string_view text, bool parse_special = false) const;

    //! Concatenated bytes of the tokens. Control tokens are rendered as their text
    //! when `render_special`, dropped otherwise.
    std::string decode(std::span<const int32_t> ids, bool render_special = true) const;
    //! Bytes of one token (see decode()).
    std::string token_to_piece(int32_t id, bool render_special = true) const;

    int32_t n_vocab() const noexcept { return static_cast<int32_t>(tokens_.size()); }
    int32_t bos_id() const noexcept { return bos_id_; }
    int32_t eos_id() const noexcept { return eos_id_; }
    //! Raw vocabulary entry (byte-level encoded, e.g. "Ġthe").
    const std::string& token_text(int32_t id) const { return tokens_.at(static_cast<std::size_t>(id)); }
    token_type type_of(int32_t id) const { return types_.at(static_cast<std::size_t>(id)); }
    //! Id of the vocabulary entry spelled exactly `text`, if any.
    std::optional<int32_t> find_token(std::string_view text) const;
    //! Value of `tokenizer.ggml.pre`.
    const std::string& pre() const noexcept { return pre_; }

private:
    struct regex; // PCRE2 handles
    tokenizer() = default;
    void bpe(std::string_view piece, std::vector<int32_t>& out) const;
    void encode_text(std::string_view text, std::vector<int32_t>& out) const;

    std::vector<std::string> tokens_;
    std::vector<token_type> types_;
    std::unordered_map<std::string, int32_t> token_ids_;
    // (left id, right id) -> (rank, merged id)
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
    std::vector<int32_t> special_ids_; // matched as whole tokens, longest first
    std::string pre_;
    bool split_digits_ = false;
    int32_t bos_id_ = -1, eos_id_ = -1, unk_id_ = -1;
    int32_t byte_ids_[256] = {}; // id of each single byte's token, -1 if absent
    std::unique_ptr<regex> re_;
};

//! Default system prompt embedded in `tokenizer.chat_template` (the text the
//! template inserts when the conversation has no system message), or "" if none.
std::string default_system_prompt(const gguf_file& f);

//! ChatML prompt for one user turn, ending with the assistant header:
//! "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n".
//! The system turn is omitted when `system` is empty. Encode with parse_special.
std::string chat_ml(std::string_view user, std::string_view system);

//! SmolLM2's default system prompt (as in its chat template).
inline constexpr std::string_view smollm_system_prompt =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

} // namespace skv::llama
