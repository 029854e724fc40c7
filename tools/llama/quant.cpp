#include "quant.hpp"

#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

namespace skv::llama {

namespace {

struct type_entry {
    ggml_type type;
    ggml_type_traits traits;
};

// Sizes of every type ggml defines, so that files using types we cannot
// dequantize still parse (and fail later with a message naming the type).
constexpr type_entry type_table[] = {
    {ggml_type::f32, {"F32", 1, 4}},          {ggml_type::f16, {"F16", 1, 2}},
    {ggml_type::q4_0, {"Q4_0", 32, 18}},      {ggml_type::q4_1, {"Q4_1", 32, 20}},
    {ggml_type::q5_0, {"Q5_0", 32, 22}},      {ggml_type::q5_1, {"Q5_1", 32, 24}},
    {ggml_type::q8_0, {"Q8_0", 32, 34}},      {ggml_type::q8_1, {"Q8_1", 32, 36}},
    {ggml_type::q2_k, {"Q2_K", 256, 84}},     {ggml_type::q3_k, {"Q3_K", 256, 110}},
    {ggml_type::q4_k, {"Q4_K", 256, 144}},    {ggml_type::q5_k, {"Q5_K", 256, 176}},
    {ggml_type::q6_k, {"Q6_K", 256, 210}},    {ggml_type::q8_k, {"Q8_K", 256, 292}},
    {ggml_type::iq2_xxs, {"IQ2_XXS", 256, 66}}, {ggml_type::iq2_xs, {"IQ2_XS", 256, 74}},
    {ggml_type::iq3_xxs, {"IQ3_XXS", 256, 98}}, {ggml_type::iq1_s, {"IQ1_S", 256, 50}},
    {ggml_type::iq4_nl, {"IQ4_NL", 32, 18}},  {ggml_type::iq3_s, {"IQ3_S", 256, 110}},
    {ggml_type::iq2_s, {"IQ2_S", 256, 82}},   {ggml_type::iq4_xs, {"IQ4_XS", 256, 136}},
    {ggml_type::i8, {"I8", 1, 1}},            {ggml_type::i16, {"I16", 1, 2}},
    {ggml_type::i32, {"I32", 1, 4}},          {ggml_type::i64, {"I64", 1, 8}},
    {ggml_type::f64, {"F64", 1, 8}},          {ggml_type::iq1_m, {"IQ1_M", 256, 56}},
    {ggml_type::bf16, {"BF16", 1, 2}},        {ggml_type::tq1_0, {"TQ1_0", 256, 54}},
    {ggml_type::tq2_0, {"TQ2_0", 256, 66}},   {ggml_type::mxfp4, {"MXFP4", 32, 17}},
};

template <class Block>
Block load_block(const void* src, int64_t i) noexcept {
    // memcpy: GGUF only guarantees tensor alignment, not block alignment.
    Block b;
    std::memcpy(&b, static_cast<const unsigned char*>(src) + i * sizeof(Block), sizeof(Block));
    return b;
}

void dequantize_q4_1(const void* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n / qk4_1; ++i) {
        const auto b = load_block<block_q4_1>(src, i);
        const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
        float* y = dst + i * qk4_1;
        for (int j = 0; j < qk4_1 / 2; ++j) {
            y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
            y[j + qk4_1 / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
        }
    }
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n / qk8_0; ++i) {
        const auto b = load_block<block_q8_0>(src, i);
        const float d = fp16_to_fp32(b.d);
        float* y = dst + i * qk8_0;
        for (int j = 0; j < qk8_0; ++j) y[j] = d * static_cast<float>(b.qs[j]);
    }
}

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
    for (int64_t i = 0; i < n / qk_k; ++i) {
        const auto b = load_block<block_q6_k>(src, i);
        const float d = fp16_to_fp32(b.d);
        float* y = dst + i * qk_k;
        // Two halves of 128 values. In a half, the four 32-value groups take the
        // low/high nibble of ql[0..31] / ql[32..63] and successive bit pairs of qh.
        const uint8_t* ql = b.ql;
        const uint8_t* qh = b.qh;
        const int8_t* sc = b.scales;
        for (int half = 0; half < 2; ++half) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * static_cast<float>(sc[is + 0] * q1);
                y[l + 32] = d * static_cast<float>(sc[is + 2] * q2);
                y[l + 64] = d * static_cast<float>(sc[is + 4] * q3);
                y[l + 96] = d * static_cast<float>(sc[is + 6] * q4);
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

} // namespace

std::optional<ggml_type_traits> type_traits(ggml_type t) noexcept {
    for (const auto& e : type_table)
        if (e.type == t) return e.traits;
    return std::nullopt;
}

std::string_view type_name(ggml_type t) noexcept {
    const auto tr = type_traits(t);
    return tr ? tr->name : std::string_view{"unknown"};
}

bool is_supported(ggml_type t) noexcept {
    switch (t) {
    case ggml_type::f32: case ggml_type::f16: case ggml_type::q4_1:
    case ggml_type::q8_0: case ggml_type::q6_k:
        return true;
    default:
        return false;
    }
}

std::string_view supported_type_names() noexcept { return "F32, F16, Q4_1, Q8_0, Q6_K"; }

std::size_t row_size(ggml_type t, int64_t n) {
    const auto tr = type_traits(t);
    if (!tr) throw std::invalid_argument("unknown ggml type id " + std::to_string(static_cast<uint32_t>(t)));
    if (n % tr->block_size != 0)
        throw std::invalid_argument(std::to_string(n) + " values is not a multiple of the " +
                                    std::string(tr->name) + " block size " + std::to_string(tr->block_size));
    return static_cast<std::size_t>(n / tr->block_size * tr->type_size);
}

float fp16_to_fp32(uint16_t h) noexcept {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);       // inf / nan
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13); // normal: rebias 15 -> 127
    } else if (mant == 0) {
        bits = sign;                                      // +-0
    } else {
        // Subnormal half: normalise the mantissa into a float normal.
        int e = -1;
        do { mant <<= 1; ++e; } while ((mant & 0x400) == 0);
        bits = sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3FF) << 13);
    }
    return std::bit_cast<float>(bits);
}

uint16_t fp32_to_fp16(float f) noexcept {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
    const uint32_t abs = x & 0x7FFFFFFFu;
    if (abs >= 0x7F800000u) // inf or nan (keep nan quiet)
        return sign | 0x7C00 | (abs > 0x7F800000u ? 0x200 : 0);
    if (abs >= 0x477FF000u) return sign | 0x7C00; // rounds to >= 65536 -> inf
    if (abs < 0x38800000u) {
        // Result is subnormal (or zero): value = abs * 2^24 in half-ulps.
        if (abs < 0x33000000u) return sign; // below half the smallest subnormal
        const uint32_t e = abs >> 23;
        const uint32_t m = (abs & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126 - e; // 14..24
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (r & 1))) ++r;
        return static_cast<uint16_t>(sign | r);
    }
    // Normal: rebias and round the 13 dropped mantissa bits to nearest even
    // (a carry into the exponent is the correct result).
    uint32_t r = ((abs >> 13) - (112u << 10));
    const uint32_t rem = abs & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) ++r;
    return static_cast<uint16_t>(sign | r);
}

void dequantize(ggml_type t, const void* src, float* dst, int64_t n) {
    (void)row_size(t, n); // validates the block multiple
    switch (t) {
    case ggml_type::f32:
        std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
        return;
    case ggml_type::f16: {
        const auto* p = static_cast<const unsigned char*>(src);
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            dst[i] = fp16_to_fp32(h);
        }
        return;
    }
    case ggml_type::q4_1: dequantize_q4_1(src, dst, n); return;
    case ggml_type::q8_0: dequantize_q8_0(src, dst, n); return;
    case ggml_type::q6_k: dequantize_q6_k(src, dst, n); return;
    default:
        throw std::invalid_argument("cannot dequantize type " + std::string(type_name(t)) +
                                    "; supported: " + std::string(supported_type_names()));
    }
}

} // namespace skv::llama
