//! @file numeric.hpp
//! 16-bit storage types for K/V (`skv::half`, `skv::bfloat16`) and their conversions to and from float.
//!
//! They are plain 16-bit payloads, layout-compatible with CUDA's `__half` / `__nv_bfloat16`, so an engine
//! passes its own buffers by `reinterpret_cast`. All arithmetic happens in float: conversions are
//! branch-light bit manipulation so that the CPU compiler vectorizes them and the same code runs on the GPU.
#pragma once

#include <skv/config.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

SKV_NAMESPACE_BEGIN

//! IEEE 754 binary16, storage only.
struct half {
  std::uint16_t bits;
};
//! bfloat16 (the upper half of a binary32), storage only.
struct bfloat16 {
  std::uint16_t bits;
};

namespace detail {
SKV_HOST_DEVICE SKV_FORCEINLINE float bits_to_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
SKV_HOST_DEVICE SKV_FORCEINLINE std::uint32_t float_to_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
} // namespace detail

SKV_HOST_DEVICE SKV_FORCEINLINE float to_float(float x) { return x; }

SKV_HOST_DEVICE SKV_FORCEINLINE float to_float(bfloat16 x) {
  return detail::bits_to_float(std::uint32_t(x.bits) << 16);
}

//! Exact binary16 -> binary32. Normals and subnormals come out of one multiply by 2^112 (the exponent
//! rebias); Inf/NaN are patched afterwards. Branch-free apart from a select, so it vectorizes.
SKV_HOST_DEVICE SKV_FORCEINLINE float to_float(half x) {
  const std::uint32_t h = x.bits;
  const std::uint32_t sign = (h & 0x8000u) << 16;
  const std::uint32_t em = h & 0x7fffu;
  float mag = detail::bits_to_float(em << 13) * 0x1p112f;
  std::uint32_t u = detail::float_to_bits(mag);
  u = em >= 0x7c00u ? (0x7f800000u | ((em & 0x3ffu) << 13)) : u;
  return detail::bits_to_float(u | sign);
}

//! Round-to-nearest-even conversion from float to the storage type `T`.
template <class T>
SKV_HOST_DEVICE SKV_FORCEINLINE T from_float(float f) {
  if constexpr (std::is_same_v<T, float>) {
    return f;
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    std::uint32_t u = detail::float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16{std::uint16_t((u >> 16) | 0x40u)}; // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return bfloat16{std::uint16_t(u >> 16)};
  } else {
    static_assert(std::is_same_v<T, half>, "skv::from_float<T>: T must be float, skv::half or skv::bfloat16");
    std::uint32_t u = detail::float_to_bits(f);
    const std::uint32_t sign = u & 0x80000000u;
    u ^= sign;
    std::uint32_t o;
    if (u >= 0x47800000u) { // |f| >= 65536: overflow to Inf, or NaN
      o = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
    } else if (u < 0x38800000u) { // below the smallest normal half: let a float add do the rounding
      const float r = detail::bits_to_float(u) + 0.5f;
      o = detail::float_to_bits(r) - 0x3f000000u;
    } else {
      const std::uint32_t odd = (u >> 13) & 1u;
      u += (std::uint32_t(15 - 127) << 23) + 0xfffu + odd;
      o = u >> 13;
    }
    return half{std::uint16_t(o | (sign >> 16))};
  }
}

//! The element types skv stores K/V in.
template <class T>
inline constexpr bool is_storage_type_v =
    std::is_same_v<T, float> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

template <class T>
concept storage_type = is_storage_type_v<T>;

//! Printable name of a storage type ("float", "half", "bfloat16").
template <storage_type T>
constexpr const char* type_name() {
  if constexpr (std::is_same_v<T, float>)
    return "float";
  else if constexpr (std::is_same_v<T, half>)
    return "half";
  else
    return "bfloat16";
}

//! exp(x) in float from plain arithmetic, so that loops over it vectorize (std::exp is a library call that blocks
//! vectorization without -ffast-math) and the GPU runs the same code. x = n ln2 + r with |r| <= ln2 / 2 (ln2 split
//! in two constants so n ln2 is exact), e^r by its degree-7 Taylor polynomial (truncation < 2e-8 relative), 2^n
//! applied as two normal powers of two. About 2 ulp; 0 below -87.3 (where expf is subnormal), +inf above 88.72.
SKV_HOST_DEVICE SKV_FORCEINLINE float polynomial_exp(float x) {
  const float xc = !(x >= -87.3f) ? -87.3f : (x > 88.72f ? 88.72f : x);  // NaN -> finite here, restored below
  const float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f; // round to nearest (1.5 * 2^23 trick)
  float r = xc - n * 0.693145751953125f;                                 // ln2, high part (exact product)
  r = r - n * 1.42860682030941723e-6f;                                   // ln2, low part
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const std::int32_t ni = std::int32_t(n), n1 = ni >> 1, n2 = ni - n1; // n in [-126, 128]: both halves normal
  const float e =
      p * detail::bits_to_float(std::uint32_t(n1 + 127) << 23) * detail::bits_to_float(std::uint32_t(n2 + 127) << 23);
  return x < -87.3f ? 0.f : (x > 88.72f ? INFINITY : (x == x ? e : x));
}

SKV_NAMESPACE_END
