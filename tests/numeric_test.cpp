#include <doctest/doctest.h>

#include <skv/numeric.hpp>

#include <cmath>
#include <cstring>
#include <limits>

// One namespace per test file: the CUDA test binary compiles every file in one translation unit.
namespace numeric_test {

namespace {
// Independent reference: decode binary16 by its definition.
double half_value(std::uint16_t h) {
  const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double sign = s ? -1.0 : 1.0;
  if (e == 0) return sign * std::ldexp(m, -24);
  if (e == 31) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  return sign * std::ldexp(1024 + m, e - 25);
}
} // namespace

TEST_CASE("half -> float is exact for all 65536 values, and float -> half round-trips") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = skv::to_float(skv::half{std::uint16_t(h)});
    const double want = half_value(std::uint16_t(h));
    if (std::isnan(want)) {
      CHECK(std::isnan(f));
      continue;
    }
    REQUIRE(double(f) == want);
    REQUIRE(skv::from_float<skv::half>(f).bits == h);
  }
}

TEST_CASE("float -> half rounds to nearest even, saturates to inf, keeps NaN") {
  CHECK(skv::from_float<skv::half>(1.0f).bits == 0x3c00);
  CHECK(skv::from_float<skv::half>(65504.f).bits == 0x7bff);
  CHECK(skv::from_float<skv::half>(65520.f).bits == 0x7c00); // halfway above max rounds to inf
  CHECK(skv::from_float<skv::half>(1e6f).bits == 0x7c00);
  CHECK(skv::from_float<skv::half>(-1e6f).bits == 0xfc00);
  CHECK((skv::from_float<skv::half>(NAN).bits & 0x7fff) > 0x7c00);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0)
  CHECK(skv::from_float<skv::half>(1.f + std::ldexp(1.f, -11)).bits == 0x3c00);
  CHECK(skv::from_float<skv::half>(1.f + 3 * std::ldexp(1.f, -11)).bits == 0x3c02);
  CHECK(skv::from_float<skv::half>(std::ldexp(1.f, -24)).bits == 0x0001); // smallest subnormal
  CHECK(skv::from_float<skv::half>(std::ldexp(1.f, -26)).bits == 0x0000); // below half of it
}

TEST_CASE("bfloat16 conversions") {
  CHECK(skv::to_float(skv::bfloat16{0x3f80}) == 1.0f);
  CHECK(skv::from_float<skv::bfloat16>(1.0f).bits == 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even
  CHECK(skv::from_float<skv::bfloat16>(1.f + std::ldexp(1.f, -8)).bits == 0x3f80);
  CHECK(skv::from_float<skv::bfloat16>(1.f + 3 * std::ldexp(1.f, -8)).bits == 0x3f82);
  CHECK(std::isnan(skv::to_float(skv::from_float<skv::bfloat16>(NAN))));
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const float f = skv::to_float(skv::bfloat16{std::uint16_t(b)});
    if (!std::isnan(f)) REQUIRE(skv::from_float<skv::bfloat16>(f).bits == b);
  }
}

} // namespace numeric_test
