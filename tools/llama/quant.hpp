#pragma once
//! \file quant.hpp
//! ggml tensor types and dequantization of the block formats skv supports.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace skv::llama {

//! ggml tensor type ids as stored in GGUF tensor infos (values fixed by ggml).
enum class ggml_type : uint32_t {
    f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
    q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
    iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21,
    iq2_s = 22, iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28,
    iq1_m = 29, bf16 = 30, tq1_0 = 34, tq2_0 = 35, mxfp4 = 39,
};

//! Storage layout of a ggml type: `type_size` bytes hold `block_size` values.
struct ggml_type_traits {
    std::string_view name;
    int64_t block_size;
    int64_t type_size;
};

//! Layout of `t`, or nullopt for an id this reader does not know.
std::optional<ggml_type_traits> type_traits(ggml_type t) noexcept;

//! Name of `t` as ggml spells it ("Q4_1"), or "unknown".
std::string_view type_name(ggml_type t) noexcept;

//! True for the types dequantize() handles: F32, F16, Q4_1, Q8_0, Q6_K.
bool is_supported(ggml_type t) noexcept;

//! Comma-separated list of supported type names, for error messages.
std::string_view supported_type_names() noexcept;

//! Bytes needed for `n` values of type `t` (n must be a multiple of the block size).
std::size_t row_size(ggml_type t, int64_t n);

//! IEEE half -> float (exact).
float fp16_to_fp32(uint16_t h) noexcept;

//! float -> IEEE half, round to nearest even (overflow gives inf).
uint16_t fp32_to_fp16(float f) noexcept;

// Block layouts, identical to ggml's (little-endian, packed).
constexpr int64_t qk4_1 = 32;  //!< values per Q4_1 block
constexpr int64_t qk8_0 = 32;  //!< values per Q8_0 block
constexpr int64_t qk_k = 256;  //!< values per K-quant super-block

//! Q4_1: x = d * q + m with 4-bit q; low nibbles hold values 0..15, high nibbles 16..31.
struct block_q4_1 {
    uint16_t d;            //!< scale (fp16)
    uint16_t m;            //!< min (fp16)
    uint8_t qs[qk4_1 / 2]; //!< nibbles
};
static_assert(sizeof(block_q4_1) == 20);

//! Q8_0: x = d * q with signed 8-bit q.
struct block_q8_0 {
    uint16_t d;        //!< scale (fp16)
    int8_t qs[qk8_0];  //!< quants
};
static_assert(sizeof(block_q8_0) == 34);

//! Q6_K: 16 sub-blocks of 16 values, x = d * scale[sub] * (q - 32) with 6-bit q
//! split into a low nibble (ql) and 2 high bits (qh).
struct block_q6_k {
    uint8_t ql[qk_k / 2];     //!< low 4 bits
    uint8_t qh[qk_k / 4];     //!< high 2 bits
    int8_t scales[qk_k / 16]; //!< 8-bit sub-block scales
    uint16_t d;               //!< super-block scale (fp16)
};
static_assert(sizeof(block_q6_k) == 210);

//! Dequantize `n` values of type `t` from `src` to `dst`.
//! Throws std::invalid_argument for an unsupported type or n not a multiple of the block size.
void dequantize(ggml_type t, const void* src, float* dst, int64_t n);

} // namespace skv::llama
