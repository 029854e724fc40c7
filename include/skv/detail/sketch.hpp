//! @file detail/sketch.hpp
//! The int8 sketch of a one-vector summary and the bounds it gives on the summary's float score, so that a selector
//! can rule segments out without reading their full-precision summary, and still select exactly what scoring every
//! summary would.
//!
//! A summary s (dim D) is stored as codes c = round(s / sigma) in [-127, 127], sigma = max|s| / 127 (kept biased,
//! c + 128, as bytes), with per row meta {sigma, e, g}: r = s - sigma c is the quantization residual,
//! e = ||r|| + kappa (||s|| + ||r||), kappa = 4 (D + 32) 2^-24, covers the float rounding of the exact score (each
//! of D products summed in 16 lanes: relative error below (D/16 + 17) 2^-24 of sum |q_d s_d| <= ||q|| ||s||), and
//! g >= sigma ||c||. The query is sketched the same way once per step: q = tau cq + rq. With the exact integer
//! I = cq . c, the float score `dot(q, s)` lies in
//!   sigma tau I  +-  (||rq|| g + ||q|| e)
//! (q . s = sigma tau I + sigma rq . c + q . r, Cauchy-Schwarz on the last two). The bounds are computed in double
//! (float in the AVX-512 kernel) and widened by more than their rounding; anything non-finite (or beyond FLT_MAX)
//! gives the bounds (-inf, +inf).
#pragma once

#include <skv/numeric.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>

SKV_NAMESPACE_BEGIN
namespace detail {

inline constexpr int sketch_meta_width = 4; //!< floats of meta per summary row: sigma, e, g, (unused)
inline constexpr int query_meta_width = 4;  //!< floats of meta per query: tau, ||rq|| up, ||q|| up, sum of cq

//! Writes the biased codes (c + 128) of `summary[0, dim)` to `code` and {sigma, e, g, 0} to `meta`.
template <class T>
SKV_HOST_DEVICE void encode_sketch(const T* summary, int dim, std::uint8_t* code, float* meta) {
  double amax = 0, s2 = 0;
  for (int d = 0; d < dim; ++d) {
    const double x = double(to_float(summary[d]));
    amax = x > amax ? x : (-x > amax ? -x : amax);
    s2 += x * x;
  }
  meta[3] = 0.f;
  if (!(amax < INFINITY)) { // inf or NaN: no usable bound, the selector scores this segment in full
    for (int d = 0; d < dim; ++d) code[d] = 128;
    meta[0] = 0.f;
    meta[1] = INFINITY;
    meta[2] = 0.f;
    return;
  }
  const float sigma = float(amax / 127.0);
  double r2 = 0, c2 = 0;
  for (int d = 0; d < dim; ++d) {
    const double x = double(to_float(summary[d]));
    double c = sigma > 0.f ? ::round(x / double(sigma)) : 0.0;
    c = c > 127 ? 127 : (c < -127 ? -127 : c);
    code[d] = std::uint8_t(int(c) + 128);
    const double r = x - double(sigma) * c;
    r2 += r * r;
    c2 += c * c;
  }
  const double kappa = 4.0 * (dim + 32) * 0x1p-24, rn = ::sqrt(r2);
  const double e = (rn + kappa * (::sqrt(s2) + rn)) * (1 + 1e-6);
  meta[0] = sigma;
  meta[1] = ::nextafterf(float(e), INFINITY);
  meta[2] = ::nextafterf(float(double(sigma) * ::sqrt(c2) * (1 + 1e-6)), INFINITY);
}

//! Sketches the query `q[0, dim)`: codes cq to `code`, {tau, ||rq|| rounded up, ||q|| rounded up, sum of cq} to
//! `meta`; a query that is not finite gets ||q|| = +inf (every bound is then (-inf, +inf)).
SKV_HOST_DEVICE inline void encode_query(const float* q, int dim, std::int8_t* code, float* meta) {
  double amax = 0, n2 = 0;
  for (int d = 0; d < dim; ++d) {
    const double x = double(q[d]);
    amax = x > amax ? x : (-x > amax ? -x : amax);
    n2 += x * x;
  }
  const double qn = ::sqrt(n2) * (1 + 1e-6);
  if (!(qn < INFINITY) || !(amax < INFINITY)) {
    for (int d = 0; d < dim; ++d) code[d] = 0;
    meta[0] = 0.f;
    meta[1] = 0.f;
    meta[2] = INFINITY;
    meta[3] = 0.f;
    return;
  }
  const float tau = float(amax / 127.0);
  double r2 = 0;
  int sum = 0;
  for (int d = 0; d < dim; ++d) {
    double c = tau > 0.f ? ::round(double(q[d]) / double(tau)) : 0.0;
    c = c > 127 ? 127 : (c < -127 ? -127 : c);
    code[d] = std::int8_t(c);
    sum += int(c);
    const double r = double(q[d]) - double(tau) * c;
    r2 += r * r;
  }
  meta[0] = tau;
  meta[1] = ::nextafterf(float(::sqrt(r2) * (1 + 1e-6)), INFINITY);
  meta[2] = ::nextafterf(float(qn), INFINITY);
  meta[3] = float(sum);
}

//! I = cq . c, exact (`code` biased by 128).
SKV_HOST_DEVICE SKV_FORCEINLINE std::int32_t sketch_dot(const std::int8_t* qcode, const std::uint8_t* code, int dim) {
  std::int32_t s = 0;
  for (int d = 0; d < dim; ++d) s += std::int32_t(qcode[d]) * (std::int32_t(code[d]) - 128);
  return s;
}

//! Bounds [lo, up] on the float score dot(q, summary) from the exact I = cq . c, the query's meta and the row's;
//! false (and (-inf, +inf)) when they are not finite.
SKV_HOST_DEVICE SKV_FORCEINLINE bool sketch_bounds_from(double dot_codes, const float* qmeta, const float* meta,
                                                        float& lo, float& up) {
  const double a = double(meta[0]) * double(qmeta[0]) * dot_codes;
  const double b = double(qmeta[1]) * double(meta[2]) + double(qmeta[2]) * double(meta[1]);
  // widened by more than the rounding of a, b and a +- b to float (2^-24 relative, 2^-149 absolute): outward bounds
  const double w = b + ((a < 0 ? -a : a) + b) * 0x1p-22 + 0x1p-140;
  const double l = a - w, u = a + w;
  if (!(l > -double(FLT_MAX) && u < double(FLT_MAX))) {
    lo = -INFINITY;
    up = INFINITY;
    return false;
  }
  lo = float(l);
  up = float(u);
  return true;
}

//! sketch_bounds_from with the portable integer dot.
SKV_HOST_DEVICE inline bool sketch_bounds(const std::int8_t* qcode, const float* qmeta, const std::uint8_t* code,
                                          const float* meta, int dim, float& lo, float& up) {
  return sketch_bounds_from(double(sketch_dot(qcode, code, dim)), qmeta, meta, lo, up);
}

} // namespace detail
SKV_NAMESPACE_END
