// GGUF reader, dequantization and forward-pass tests on tiny files written by
// the test itself (no model download needed).

#include "gguf_writer.hpp"
#include "llama/gguf.hpp"
#include "llama/model.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>

namespace fs = std::filesystem;
namespace sl = skv::llama;
using skv::test::gguf_writer;
using sl::ggml_type;

namespace {

// Per-process scratch directory, removed at exit.
struct scratch_dir {
    fs::path path = fs::temp_directory_path() / ("skv_model_test_" + std::to_string(::getpid()));
    scratch_dir() { fs::create_directories(path); }
    ~scratch_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

fs::path temp_file(const std::string& name) {
    static const scratch_dir dir;
    return dir.path / name;
}

std::vector<float> random_floats(std::size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

std::string error_of(const auto& fn) {
    try {
        fn();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "<no exception>";
}

// Tiny llama: 2 layers, embd 32, 4 query heads / 2 KV heads of size 8, ff 48, vocab 40.
struct tiny_config {
    int n_layer = 2, n_embd = 32, n_head = 4, n_head_kv = 2, n_ff = 48, n_vocab = 40;
    float eps = 1e-5f, rope_base = 10000.0f;
    std::string arch = "llama";
    ggml_type attn_q_type = ggml_type::f32;
};

// Weights are written in assorted types; `expected` keeps what the reader must return.
struct tiny_model {
    std::map<std::string, std::vector<float>> expected;
};

tiny_model write_tiny_llama(const fs::path& path, const tiny_config& c) {
    gguf_writer w;
    tiny_model tm;
    w.add_string("general.architecture", c.arch);
    w.add_string("general.name", "tiny");
    w.add_u32(c.arch + ".context_length", 512);
    w.add_u32(c.arch + ".block_count", static_cast<uint32_t>(c.n_layer));
    w.add_u32(c.arch + ".embedding_length", static_cast<uint32_t>(c.n_embd));
    w.add_u32(c.arch + ".feed_forward_length", static_cast<uint32_t>(c.n_ff));
    w.add_u32(c.arch + ".attention.head_count", static_cast<uint32_t>(c.n_head));
    w.add_u32(c.arch + ".attention.head_count_kv", static_cast<uint32_t>(c.n_head_kv));
    w.add_f32(c.arch + ".attention.layer_norm_rms_epsilon", c.eps);
    w.add_f32(c.arch + ".rope.freq_base", c.rope_base);
    w.add_u32("tokenizer.ggml.bos_token_id", 1);
    w.add_u32("tokenizer.ggml.eos_token_id", 2);

    uint32_t seed = 100;
    auto add = [&](const std::string& name, std::vector<uint64_t> shape, ggml_type type, float scale) {
        std::size_t n = 1;
        for (auto d : shape) n *= d;
        const auto v = random_floats(n, seed++, scale);
        skv::test::quantized q;
        if (type == ggml_type::f32) {
            w.add_f32_tensor(name, shape, v);
            tm.expected[name] = v;
            return;
        }
        if (type == ggml_type::f16) q = skv::test::quantize_f16(v);
        else if (type == ggml_type::q8_0) q = skv::test::quantize_q8_0(v);
        else if (type == ggml_type::q4_1) q = skv::test::quantize_q4_1(v);
        else if (type == ggml_type::q5_k) q.bytes.assign(n / 256 * 176, 0); // valid size, unsupported type
        w.add_tensor(name, shape, type, q.bytes);
        tm.expected[name] = q.expected;
    };
    const auto d = static_cast<uint64_t>(c.n_embd), ff = static_cast<uint64_t>(c.n_ff);
    const auto hd = d / static_cast<uint64_t>(c.n_head);
    add("token_embd.weight", {d, static_cast<uint64_t>(c.n_vocab)}, ggml_type::q8_0, 1.0f);
    for (int il = 0; il < c.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        add(p + "attn_norm.weight", {d}, ggml_type::f32, 1.0f);
        add(p + "attn_q.weight", {d, d}, il == 0 ? c.attn_q_type : ggml_type::f32, 0.3f);
        add(p + "attn_k.weight", {d, hd * static_cast<uint64_t>(c.n_head_kv)}, ggml_type::f16, 0.3f);
        add(p + "attn_v.weight", {d, hd * static_cast<uint64_t>(c.n_head_kv)}, ggml_type::q8_0, 0.3f);
        add(p + "attn_output.weight", {d, d}, ggml_type::q4_1, 0.3f);
        add(p + "ffn_norm.weight", {d}, ggml_type::f32, 1.0f);
        add(p + "ffn_gate.weight", {d, ff}, ggml_type::f16, 0.3f);
        add(p + "ffn_up.weight", {d, ff}, ggml_type::q8_0, 0.3f);
        add(p + "ffn_down.weight", {ff, d}, ggml_type::f32, 0.3f);
    }
    add("output_norm.weight", {d}, ggml_type::f32, 1.0f);
    // No output.weight: the head is tied to token_embd (as in SmolLM2).
    w.write(path);
    return tm;
}

// Straightforward reference forward pass (plain loops, double accumulation),
// independent of the BLAS layout tricks and the attention backend.
std::vector<std::vector<double>> reference_logits(const tiny_model& tm, const tiny_config& c,
                                                  const std::vector<int32_t>& tokens) {
    const int d = c.n_embd, hd = c.n_embd / c.n_head, n = static_cast<int>(tokens.size());
    auto W = [&](const std::string& name) -> const std::vector<float>& { return tm.expected.at(name); };
    auto matvec = [](const std::vector<float>& w, const std::vector<double>& x, int out) {
        const int in = static_cast<int>(x.size());
        std::vector<double> y(static_cast<std::size_t>(out));
        for (int o = 0; o < out; ++o)
            for (int i = 0; i < in; ++i) y[o] += static_cast<double>(w[static_cast<std::size_t>(o) * in + i]) * x[i];
        return y;
    };
    auto norm = [&](const std::vector<double>& x, const std::vector<float>& w) {
        double ss = 0;
        for (double v : x) ss += v * v;
        const double s = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + c.eps);
        std::vector<double> y(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
        return y;
    };
    auto rope = [&](std::vector<double>& v, int n_heads, int pos) {
        for (int h = 0; h < n_heads; ++h)
            for (int i = 0; i < hd / 2; ++i) {
                const double th = pos * std::pow(static_cast<double>(c.rope_base), -2.0 * i / hd);
                double& a = v[static_cast<std::size_t>(h * hd + 2 * i)];
                double& b = v[static_cast<std::size_t>(h * hd + 2 * i + 1)];
                const double a0 = a, b0 = b;
                a = a0 * std::cos(th) - b0 * std::sin(th);
                b = a0 * std::sin(th) + b0 * std::cos(th);
            }
    };
    std::vector<std::vector<double>> x(static_cast<std::size_t>(n));
    for (int t = 0; t < n; ++t)
        for (int i = 0; i < d; ++i)
            x[t].push_back(W("token_embd.weight")[static_cast<std::size_t>(tokens[t]) * d + i]);
    for (int il = 0; il < c.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        std::vector<std::vector<double>> q(n), k(n), v(n);
        for (int t = 0; t < n; ++t) {
            const auto h = norm(x[t], W(p + "attn_norm.weight"));
            q[t] = matvec(W(p + "attn_q.weight"), h, c.n_head * hd);
            k[t] = matvec(W(p + "attn_k.weight"), h, c.n_head_kv * hd);
            v[t] = matvec(W(p + "attn_v.weight"), h, c.n_head_kv * hd);
            rope(q[t], c.n_head, t);
            rope(k[t], c.n_head_kv, t);
        }
        for (int t = 0; t < n; ++t) {
            std::vector<double> att(static_cast<std::size_t>(c.n_head * hd));
            for (int h = 0; h < c.n_head; ++h) {
                const int g = h / (c.n_head / c.n_head_kv);
                std::vector<double> s(static_cast<std::size_t>(t + 1));
                double mx = -1e300;
                for (int j = 0; j <= t; ++j) {
                    for (int i = 0; i < hd; ++i) s[j] += q[t][h * hd + i] * k[j][g * hd + i];
                    s[j] /= std::sqrt(static_cast<double>(hd));
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (auto& e : s) sum += (e = std::exp(e - mx));
                for (int j = 0; j <= t; ++j)
                    for (int i = 0; i < hd; ++i) att[h * hd + i] += s[j] / sum * v[j][g * hd + i];
            }
            const auto o = matvec(W(p + "attn_output.weight"), att, d);
            for (int i = 0; i < d; ++i) x[t][i] += o[i];
            const auto h2 = norm(x[t], W(p + "ffn_norm.weight"));
            auto gte = matvec(W(p + "ffn_gate.weight"), h2, c.n_ff);
            const auto up = matvec(W(p + "ffn_up.weight"), h2, c.n_ff);
            for (int i = 0; i < c.n_ff; ++i) gte[i] = gte[i] / (1 + std::exp(-gte[i])) * up[i];
            const auto dn = matvec(W(p + "ffn_down.weight"), gte, d);
            for (int i = 0; i < d; ++i) x[t][i] += dn[i];
        }
    }
    std::vector<std::vector<double>> logits;
    for (int t = 0; t < n; ++t) logits.push_back(matvec(W("token_embd.weight"), norm(x[t], W("output_norm.weight")), c.n_vocab));
    return logits;
}

} // namespace

TEST_CASE("fp16 conversion") {
    CHECK(sl::fp16_to_fp32(0x3C00) == 1.0f);
    CHECK(sl::fp16_to_fp32(0xC000) == -2.0f);
    CHECK(sl::fp16_to_fp32(0x7BFF) == 65504.0f);
    CHECK(sl::fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24)); // smallest subnormal
    CHECK(sl::fp16_to_fp32(0x0400) == std::ldexp(1.0f, -14)); // smallest normal
    CHECK(std::isinf(sl::fp16_to_fp32(0x7C00)));
    CHECK(sl::fp32_to_fp16(1.0f) == 0x3C00);
    CHECK(sl::fp32_to_fp16(65504.0f) == 0x7BFF);
    CHECK(sl::fp32_to_fp16(1e6f) == 0x7C00);
    CHECK(sl::fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);
    CHECK(sl::fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00); // tie -> even
    // Every finite half survives a round trip.
    for (uint32_t h = 0; h < 0x10000; ++h) {
        if ((h & 0x7C00) == 0x7C00) continue;
        const float f = sl::fp16_to_fp32(static_cast<uint16_t>(h));
        if (sl::fp32_to_fp16(f) != h) FAIL("round trip of half 0x" << std::hex << h);
    }
}

TEST_CASE("metadata of all types and tensors round-trip") {
    gguf_writer w;
    w.set_alignment(64);
    w.add_u64("general.alignment", 64);
    w.add_string("general.architecture", "llama");
    w.add_u8("t.u8", 200);
    w.add_i8("t.i8", -100);
    w.add_u16("t.u16", 60000);
    w.add_i16("t.i16", -30000);
    w.add_u32("t.u32", 4000000000u);
    w.add_i32("t.i32", -2000000000);
    w.add_f32("t.f32", 0.25f);
    w.add_bool("t.bool", true);
    w.add_string("t.str", "héllo");
    w.add_u64("t.u64", 1ull << 40);
    w.add_i64("t.i64", -(1ll << 40));
    w.add_f64("t.f64", 1.0 / 3.0);
    w.add_string_array("t.strs", {"a", "", "<|im_start|>", "Ġthe"});
    w.add_i32_array("t.ints", {1, -2, 3});

    const auto f32 = random_floats(3 * 64, 1);
    const auto f16 = skv::test::quantize_f16(random_floats(64, 2));
    const auto q8 = skv::test::quantize_q8_0(random_floats(2 * 64, 3, 4.0f));
    const auto q41 = skv::test::quantize_q4_1(random_floats(3 * 32, 4, 0.5f));
    w.add_f32_tensor("a.f32", {64, 3}, f32);
    w.add_tensor("b.f16", {64}, ggml_type::f16, f16.bytes);
    w.add_tensor("c.q8_0", {64, 2}, ggml_type::q8_0, q8.bytes);
    w.add_tensor("d.q4_1", {32, 3}, ggml_type::q4_1, q41.bytes);
    const auto path = temp_file("all_types.gguf");
    w.write(path);

    const auto f = sl::gguf_file::open(path);
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 64);
    CHECK(f.data_offset() % 64 == 0);
    CHECK(f.get_int("t.u8") == 200);
    CHECK(f.at("t.u8").type == sl::gguf_value_type::uint8);
    CHECK(f.get_int("t.i8") == -100);
    CHECK(f.get_int("t.u16") == 60000);
    CHECK(f.get_int("t.i16") == -30000);
    CHECK(f.get_int("t.u32") == 4000000000LL);
    CHECK(f.get_int("t.i32") == -2000000000LL);
    CHECK(f.get_float("t.f32") == 0.25);
    CHECK(f.at("t.f32").type == sl::gguf_value_type::float32);
    CHECK(f.get_int("t.bool") == 1);
    CHECK(f.at("t.bool").type == sl::gguf_value_type::boolean);
    CHECK(f.get_string("t.str") == "héllo");
    CHECK(f.get_int("t.u64") == (1LL << 40));
    CHECK(f.get_int("t.i64") == -(1LL << 40));
    CHECK(f.get_float("t.f64") == doctest::Approx(1.0 / 3.0).epsilon(1e-15));
    CHECK(f.get_string_array("t.strs") == std::vector<std::string>{"a", "", "<|im_start|>", "Ġthe"});
    CHECK(f.get_int_array("t.ints") == std::vector<int64_t>{1, -2, 3});
    CHECK(f.get_int("missing", 7) == 7);
    CHECK_THROWS_AS(f.get_string("t.u8"), std::runtime_error);
    CHECK(error_of([&] { (void)f.at("nope"); }).find("missing metadata key 'nope'") != std::string::npos);

    REQUIRE(f.tensors().size() == 4);
    CHECK(f.type_histogram_string() == "F16: 1, F32: 1, Q4_1: 1, Q8_0: 1");
    const auto* a = f.find_tensor("a.f32");
    REQUIRE(a != nullptr);
    CHECK(a->shape == std::vector<int64_t>{64, 3});
    CHECK(a->n_elements() == 192);
    CHECK(f.dequantize(*a) == f32);
    for (const auto* name : {"b.f16", "c.q8_0", "d.q4_1"}) {
        const auto* t = f.find_tensor(name);
        REQUIRE(t != nullptr);
        CHECK((t->data - f.find_tensor("a.f32")->data) % 64 == 0);
    }
    auto check_values = [&](const char* name, const std::vector<float>& want) {
        const auto got = f.dequantize(*f.find_tensor(name));
        REQUIRE(got.size() == want.size());
        for (std::size_t i = 0; i < got.size(); ++i)
            if (std::fabs(got[i] - want[i]) > 1e-6f * (1.0f + std::fabs(want[i])))
                FAIL(name << "[" << i << "] = " << got[i] << ", expected " << want[i]);
    };
    check_values("b.f16", f16.expected);
    check_values("c.q8_0", q8.expected);
    check_values("d.q4_1", q41.expected);
}

TEST_CASE("reference quantizers stay close to the input") {
    // Guards the test quantizers themselves: error within half a step.
    const auto x = random_floats(256, 9);
    const auto q8 = skv::test::quantize_q8_0(x);
    const auto q4 = skv::test::quantize_q4_1(x);
    for (std::size_t i = 0; i < x.size(); ++i) {
        CHECK(std::fabs(q8.expected[i] - x[i]) < 0.03f);
        CHECK(std::fabs(q4.expected[i] - x[i]) < 0.4f);
    }
}

TEST_CASE("Q6_K hand-built block") {
    // Layout (ggml block_q6_K): ql[128] low nibbles, qh[64] high bit pairs,
    // int8 scales[16], fp16 d. Value j of the 256: half = j / 128, within the
    // half group k = (j % 128) / 32 and lane l = j % 32; its low nibble is
    // ql[64*half + l + 32*(k & 1)] (low nibble for k < 2, high for k >= 2), its
    // high 2 bits are bits 2k..2k+1 of qh[32*half + l], and its scale is
    // scales[8*half + l/16 + 2k]; x = d * scale * (q - 32).
    // (Cross-checked during development against gguf-py's numpy dequantizer.)
    sl::block_q6_k b{};
    b.d = sl::fp32_to_fp16(0.5f);
    for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<int8_t>(i % 2 == 0 ? i + 1 : -(i + 1));
    int q[256];
    for (int j = 0; j < 256; ++j) q[j] = (j * 37 + 11) % 64;
    for (int j = 0; j < 256; ++j) {
        const int half = j / 128, k = (j % 128) / 32, l = j % 32;
        uint8_t& lo = b.ql[64 * half + l + 32 * (k & 1)];
        lo |= static_cast<uint8_t>((q[j] & 0xF) << (k >= 2 ? 4 : 0));
        b.qh[32 * half + l] |= static_cast<uint8_t>(((q[j] >> 4) & 3) << (2 * k));
    }
    float out[256];
    sl::dequantize(ggml_type::q6_k, &b, out, 256);
    for (int j = 0; j < 256; ++j) {
        const int half = j / 128, k = (j % 128) / 32, l = j % 32;
        const float want = 0.5f * static_cast<float>(b.scales[8 * half + l / 16 + 2 * k]) * static_cast<float>(q[j] - 32);
        if (out[j] != want) FAIL("Q6_K value " << j << " = " << out[j] << ", expected " << want);
    }
    // Spot values written out by hand: j = 0 -> q 11, scale 1; j = 200 -> q = (7400+11)%64 = 51,
    // half 1, k = 2, l = 8 -> scale index 8 + 0 + 4 = 12 -> scale 13.
    CHECK(out[0] == 0.5f * 1 * (11 - 32));
    CHECK(out[200] == 0.5f * 13 * (51 - 32));
}

TEST_CASE("error: missing file") {
    const auto msg = error_of([] { (void)sl::gguf_file::open("/nonexistent/dir/model.gguf"); });
    CHECK(msg.find("/nonexistent/dir/model.gguf") != std::string::npos);
    CHECK(msg.find("cannot open") != std::string::npos);
}

TEST_CASE("error: bad magic") {
    gguf_writer w;
    w.set_magic(0x464C457F); // "\x7fELF"
    const auto path = temp_file("bad_magic.gguf");
    w.write(path);
    const auto msg = error_of([&] { (void)sl::gguf_file::open(path); });
    CHECK(msg.find(path.string()) != std::string::npos);
    CHECK(msg.find("bad magic") != std::string::npos);
}

TEST_CASE("error: truncated files") {
    const auto path = temp_file("full.gguf");
    write_tiny_llama(path, {});
    std::vector<uint8_t> full;
    {
        std::ifstream in(path, std::ios::binary);
        full.assign(std::istreambuf_iterator<char>(in), {});
    }
    const auto f = sl::gguf_file::open(path);
    const auto cut = temp_file("cut.gguf");

    SUBCASE("inside tensor data") {
        full.resize(full.size() - 10);
        gguf_writer::write_bytes(cut, full);
        const auto msg = error_of([&] { (void)sl::gguf_file::open(cut); });
        CHECK(msg.find(cut.string()) != std::string::npos);
        CHECK(msg.find("truncated file: tensor 'output_norm.weight'") != std::string::npos);
    }
    SUBCASE("inside the header") {
        full.resize(f.data_offset() / 2);
        gguf_writer::write_bytes(cut, full);
        const auto msg = error_of([&] { (void)sl::gguf_file::open(cut); });
        CHECK(msg.find(cut.string()) != std::string::npos);
        CHECK(msg.find("truncated file") != std::string::npos);
    }
    SUBCASE("every prefix of the header fails cleanly") {
        const std::vector<uint8_t> whole = full;
        for (std::size_t n = 0; n < f.data_offset(); n += 7) {
            full.assign(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
            gguf_writer::write_bytes(cut, full);
            if (error_of([&] { (void)sl::gguf_file::open(cut); }).find("truncated") == std::string::npos)
                FAIL("prefix of " << n << " bytes was not reported as truncated");
        }
    }
    SUBCASE("empty file") {
        full.clear();
        gguf_writer::write_bytes(cut, full);
        CHECK(error_of([&] { (void)sl::gguf_file::open(cut); }).find("truncated file") != std::string::npos);
    }
}

TEST_CASE("error: unsupported tensor type is named") {
    tiny_config c;
    c.n_embd = 256; // Q5_K needs rows of 256
    c.n_head = 4;
    c.attn_q_type = ggml_type::q5_k;
    const auto path = temp_file("q5k.gguf");
    write_tiny_llama(path, c);
    CHECK_NOTHROW((void)sl::gguf_file::open(path)); // the container itself is fine
    const auto msg = error_of([&] { (void)sl::model::load(path); });
    CHECK(msg.find(path.string()) != std::string::npos);
    CHECK(msg.find("tensor 'blk.0.attn_q.weight' has type Q5_K (13); supported: F32, F16, Q4_1, Q8_0, Q6_K") !=
          std::string::npos);
}

TEST_CASE("error: non-llama architecture") {
    tiny_config c;
    c.arch = "gpt2";
    const auto path = temp_file("gpt2.gguf");
    write_tiny_llama(path, c);
    const auto msg = error_of([&] { (void)sl::model::load(path); });
    CHECK(msg.find(path.string()) != std::string::npos);
    CHECK(msg.find("unsupported architecture 'gpt2'") != std::string::npos);
}

TEST_CASE("tiny llama: forward matches a plain reference implementation") {
    const tiny_config c;
    const auto path = temp_file("tiny.gguf");
    const auto tm = write_tiny_llama(path, c);
    auto m = sl::model::load(path);
    CHECK(m.params().n_layer == 2);
    CHECK(m.params().head_dim == 8);
    CHECK(m.params().n_vocab == 40);
    CHECK(m.params().bos_id == 1);
    CHECK(m.params().eos_id == 2);

    sl::dense_attention_backend backend(m.params());
    // 300 tokens: more than one 128-query block in the dense backend.
    std::vector<int32_t> tokens;
    std::mt19937 rng(5);
    for (int i = 0; i < 300; ++i) tokens.push_back(static_cast<int32_t>(rng() % 40));
    const auto ref = reference_logits(tm, c, tokens);

    const auto all = m.prefill(tokens, backend, true);
    REQUIRE(all.size() == tokens.size() * 40);
    double max_diff = 0;
    for (std::size_t t = 0; t < tokens.size(); ++t)
        for (int j = 0; j < 40; ++j) max_diff = std::max(max_diff, std::fabs(all[t * 40 + j] - ref[t][j]));
    MESSAGE("max |prefill - reference| = " << max_diff);
    CHECK(max_diff < 1e-3);
    CHECK(backend.n_cached(0) == 300);

    // A one-token prompt.
    const auto one = m.prefill(std::span<const int32_t>(tokens.data(), 1), backend);
    for (int j = 0; j < 40; ++j) CHECK(one[j] == doctest::Approx(ref[0][j]).epsilon(1e-4));

    // Prefill of a prefix followed by decode steps gives the same logits.
    const std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + 5);
    auto last = m.prefill(prefix, backend);
    CHECK(m.n_past() == 5);
    for (std::size_t t = 5; t < 40; ++t) {
        last = m.decode(tokens[t], backend);
        double d = 0;
        for (int j = 0; j < 40; ++j) d = std::max(d, std::fabs(last[j] - ref[t][j]));
        if (d > 1e-3) FAIL("decode step " << t << " differs by " << d);
    }
    CHECK(m.n_past() == 40);
    CHECK(backend.n_cached(1) == 40);
}
