#pragma once
// Internal: small vectorizable float kernels (compiled with -fopenmp-simd).

#include <bit>
#include <cstdint>

namespace skv::llama::detail {

// exp(x) for finite x, clamped to [-87, 88] (softmax and SiLU never need more).
// Cody-Waite reduction + Cephes degree-6 polynomial, ~1 ulp; written branch-free
// so the compiler vectorizes it -- std::exp does not vectorize without -ffast-math.
inline float fast_exp(float x) noexcept {
    // Two independent selects (not nested) so GCC if-converts and vectorizes.
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f; // 1.5 * 2^23: adding it rounds to an integer
    const float kf = (x * 1.44269504088896341f + magic) - magic;
    const float r = x - kf * 0.693359375f + kf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * r * r + r + 1.0f;
    // 2^k built from the exponent bits; k in [-126, 127] after the clamp.
    const auto k = static_cast<int32_t>(kf);
    return y * std::bit_cast<float>(static_cast<uint32_t>((k + 127) << 23));
}

// In-place softmax of x[0..n).
inline void softmax(float* x, int n) noexcept {
    float mx = x[0];
#pragma omp simd reduction(max : mx)
    for (int i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
#pragma omp simd
    for (int i = 0; i < n; ++i) x[i] = fast_exp(x[i] - mx);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; ++i) sum += x[i];
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int i = 0; i < n; ++i) x[i] *= inv;
}

} // namespace skv::llama::detail
