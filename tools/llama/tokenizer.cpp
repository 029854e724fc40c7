#include "tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <limits>
#include <stdexcept>

namespace skv::llama {

namespace {

[[noreturn]] void fail(const gguf_file& f, const std::string& what) {
    throw std::runtime_error("tokenizer: " + f.path().string() + ": " + what);
}

void append_utf8(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// Length of the UTF-8 sequence starting with byte c (1 for invalid lead bytes,
// so malformed text still advances byte by byte).
std::size_t utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

// GPT-2's reversible byte <-> printable code point map: printable Latin-1 bytes
// map to themselves, the other 68 bytes to U+0100.. in byte order.
struct byte_map {
    std::array<std::string, 256> byte_to_utf8;
    std::array<int, 512> cp_to_byte; // -1 where unmapped; all mapped code points are < 0x144

    byte_map() {
        cp_to_byte.fill(-1);
        uint32_t next = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            const uint32_t cp = printable ? b : next++;
            append_utf8(byte_to_utf8[b], cp);
            cp_to_byte[cp] = static_cast<int>(b);
        }
    }
};

const byte_map& bytes() {
    static const byte_map m;
    return m;
}

// GPT-2 pre-tokenizer regex (as in HF tokenizers' ByteLevel).
constexpr const char* gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* digit_pattern = R"(\p{N})";

uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

} // namespace

struct tokenizer::regex {
    pcre2_code* gpt2 = nullptr;
    pcre2_code* digit = nullptr;

    static pcre2_code* compile(const char* pattern) {
        int err = 0;
        PCRE2_SIZE off = 0;
        // UCP: \s, \p{..} use Unicode properties; MATCH_INVALID_UTF: arbitrary bytes are not an error.
        pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
        if (re == nullptr) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            throw std::runtime_error(std::string("tokenizer: cannot compile regex: ") + reinterpret_cast<char*>(msg));
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // optional speed-up; interpreter is the fallback
        return re;
    }

    ~regex() {
        pcre2_code_free(gpt2);
        pcre2_code_free(digit);
    }

    // Calls fn(begin, end) for consecutive pieces of s: each match of re, and
    // each unmatched gap between matches as its own piece.
    template <class Fn>
    static void split(const pcre2_code* re, std::string_view s, Fn&& fn) {
        std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
            pcre2_match_data_create_from_pattern(re, nullptr), pcre2_match_data_free);
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
        std::size_t pos = 0;
        while (pos < s.size()) {
            const int rc = pcre2_match(re, subject, s.size(), pos, 0, md.get(), nullptr);
            if (rc < 0) break; // no more matches (or a matching error): rest is a gap
            const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
            if (ov[0] > pos) fn(pos, ov[0]);
            if (ov[1] == ov[0]) { // empty match: cannot happen with these patterns, but never loop
                fn(ov[0], ov[0] + utf8_len(static_cast<unsigned char>(s[ov[0]])));
                pos = ov[0] + utf8_len(static_cast<unsigned char>(s[ov[0]]));
                continue;
            }
            fn(ov[0], ov[1]);
            pos = ov[1];
        }
        if (pos < s.size()) fn(pos, s.size());
    }
};

tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

tokenizer tokenizer::from_gguf(const gguf_file& f) {
    const auto* model = f.find("tokenizer.ggml.model");
    if (model == nullptr) fail(f, "missing metadata 'tokenizer.ggml.model'");
    if (model->as_string() != "gpt2")
        fail(f, "tokenizer model '" + model->as_string() + "' is not supported (only byte-level BPE 'gpt2')");

    tokenizer t;
    t.pre_ = f.find("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "gpt2";
    if (t.pre_ == "smollm")
        t.split_digits_ = true;
    else if (t.pre_ != "gpt2" && t.pre_ != "default")
        fail(f, "pre-tokenizer '" + t.pre_ + "' is not supported (supported: smollm, gpt2)");

    t.tokens_ = f.get_string_array("tokenizer.ggml.tokens");
    const auto n = t.tokens_.size();
    if (n == 0 || n > static_cast<std::size_t>(std::numeric_limits<int32_t>::max())) fail(f, "bad vocabulary size");
    t.types_.assign(n, token_type::normal);
    if (f.find("tokenizer.ggml.token_type")) {
        const auto types = f.get_int_array("tokenizer.ggml.token_type");
        if (types.size() != n) fail(f, "tokenizer.ggml.token_type length differs from the vocabulary");
        for (std::size_t i = 0; i < n; ++i) t.types_[i] = static_cast<token_type>(types[i]);
    }
    t.token_ids_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) t.token_ids_.emplace(t.tokens_[i], static_cast<int32_t>(i));

    const auto merges = f.get_string_array("tokenizer.ggml.merges");
    t.merges_.reserve(merges.size());
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& m = merges[rank];
        const auto sp = m.find(' ', 1); // byte-level tokens never contain a raw space
        if (sp == std::string::npos) fail(f, "malformed merge '" + m + "'");
        const std::string left = m.substr(0, sp), right = m.substr(sp + 1);
        const auto l = t.find_token(left), r = t.find_token(right), lr = t.find_token(left + right);
        if (!l || !r || !lr) continue; // merge producing an unknown token can never apply
        t.merges_.emplace(pair_key(*l, *r), std::pair{static_cast<int32_t>(rank), *lr});
    }

    for (int b = 0; b < 256; ++b) {
        const auto id = t.find_token(bytes().byte_to_utf8[static_cast<std::size_t>(b)]);
        t.byte_ids_[b] = id ? *id : -1;
    }
    for (std::size_t i = 0; i < n; ++i)
        if (t.types_[i] == token_type::control || t.types_[i] == token_type::user_defined)
            if (!t.tokens_[i].empty()) t.special_ids_.push_back(static_cast<int32_t>(i));
    // Longest first so e.g. "<reponame>" is not shadowed by a shorter prefix token.
    std::stable_sort(t.special_ids_.begin(), t.special_ids_.end(),
                     [&](int32_t a, int32_t b) { return t.tokens_[a].size() > t.tokens_[b].size(); });

    t.bos_id_ = static_cast<int32_t>(f.get_int("tokenizer.ggml.bos_token_id", -1));
    t.eos_id_ = static_cast<int32_t>(f.get_int("tokenizer.ggml.eos_token_id", -1));
    t.unk_id_ = static_cast<int32_t>(f.get_int("tokenizer.ggml.unknown_token_id", -1));

    t.re_ = std::make_unique<regex>();
    t.re_->gpt2 = regex::compile(gpt2_pattern);
    t.re_->digit = regex::compile(digit_pattern);
    return t;
}

std::optional<int32_t> tokenizer::find_token(std::string_view text) const {
    const auto it = token_ids_.find(std::string(text));
    if (it == token_ids_.end()) return std::nullopt;
    return it->second;
}

// BPE over one pre-tokenized piece: start from one symbol per byte (as its
// byte-level character) and repeatedly merge the adjacent pair of lowest rank
// (leftmost on ties), as GPT-2 / HF tokenizers do.
void tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
    std::vector<int32_t> syms;
    syms.reserve(piece.size());
    for (unsigned char c : piece) {
        const int32_t id = byte_ids_[c];
        if (id >= 0)
            syms.push_back(id);
        else if (unk_id_ >= 0)
            syms.push_back(unk_id_); // vocabulary without this byte: nothing better exists
    }
    while (syms.size() > 1) {
        int32_t best_rank = std::numeric_limits<int32_t>::max(), best_id = -1;
        std::size_t best_pos = 0;
        for (std::size_t i = 0; i + 1 < syms.size(); ++i) {
            const auto it = merges_.find(pair_key(syms[i], syms[i + 1]));
            if (it != merges_.end() && it->second.first < best_rank) {
                best_rank = it->second.first;
                best_id = it->second.second;
                best_pos = i;
            }
        }
        if (best_id < 0) break;
        syms[best_pos] = best_id;
        syms.erase(syms.begin() + static_cast<std::ptrdiff_t>(best_pos) + 1);
    }
    out.insert(out.end(), syms.begin(), syms.end());
}

void tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
    auto gpt2 = [&](std::string_view chunk) {
        regex::split(re_->gpt2, chunk, [&](std::size_t b, std::size_t e) { bpe(chunk.substr(b, e - b), out); });
    };
    if (!split_digits_) {
        gpt2(text);
        return;
    }
    // smollm: each \p{N} is its own piece; the text between digits goes through the GPT-2 regex.
    regex::split(re_->digit, text, [&](std::size_t b, std::size_t e) { gpt2(text.substr(b, e - b)); });
}

std::vector<int32_t> tokenizer::encode(std::string_view text, bool parse_special) const {
    std::vector<int32_t> out;
    std::size_t start = 0, pos = 0;
    while (pos < text.size()) {
        int32_t hit = -1;
        for (int32_t id : special_ids_) {
            // Control tokens only when asked (like llama.cpp); user-defined ones always.
            if (types_[static_cast<std::size_t>(id)] == token_type::control && !parse_special) continue;
            if (text.substr(pos).starts_with(tokens_[static_cast<std::size_t>(id)])) {
                hit = id;
                break;
            }
        }
        if (hit < 0) {
            ++pos;
            continue;
        }
        if (pos > start) encode_text(text.substr(start, pos - start), out);
        out.push_back(hit);
        pos += tokens_[static_cast<std::size_t>(hit)].size();
        start = pos;
    }
    if (start < text.size()) encode_text(text.substr(start), out);
    return out;
}

std::string tokenizer::token_to_piece(int32_t id, bool render_special) const {
    if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size())
        throw std::out_of_range("tokenizer: token id " + std::to_string(id) + " out of range");
    const std::string& text = tokens_[static_cast<std::size_t>(id)];
    switch (types_[static_cast<std::size_t>(id)]) {
    case token_type::control:
    case token_type::unknown:
        return render_special ? text : std::string();
    case token_type::user_defined:
        return text;
    case token_type::unused:
        return {};
    case token_type::byte:
        // "<0xAB>"
        if (text.size() == 6 && text.starts_with("<0x"))
            return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
        return text;
    default:
        break;
    }
    // Normal token: map each byte-level code point back to its byte.
    std::string out;
    for (std::size_t i = 0; i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        const std::size_t len = std::min(utf8_len(c), text.size() - i);
        uint32_t cp = c;
        if (len == 2) cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
        if (len <= 2 && cp < 512 && bytes().cp_to_byte[cp] >= 0)
            out += static_cast<char>(bytes().cp_to_byte[cp]);
        else
            out.append(text, i, len); // not byte-level encoded: keep as is
        i += len;
    }
    return out;
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
    std::string out;
    for (int32_t id : ids) out += token_to_piece(id, render_special);
    return out;
}

std::string default_system_prompt(const gguf_file& f) {
    const auto* tmpl = f.find("tokenizer.chat_template");
    if (tmpl == nullptr) return {};
    const std::string& s = tmpl->as_string();
    // The template writes the default as a literal: '<|im_start|>system\n...<|im_end|>
    const std::string open = "'<|im_start|>system\n";
    const auto b = s.find(open);
    if (b == std::string::npos) return {};
    const auto e = s.find("<|im_end|>", b + open.size());
    if (e == std::string::npos) return {};
    return s.substr(b + open.size(), e - b - open.size());
}

std::string chat_ml(std::string_view user, std::string_view system) {
    std::string s;
    if (!system.empty()) {
        s += "<|im_start|>system\n";
        s += system;
        s += "<|im_end|>\n";
    }
    s += "<|im_start|>user\n";
    s += user;
    s += "<|im_end|>\n<|im_start|>assistant\n";
    return s;
}

} // namespace skv::llama
