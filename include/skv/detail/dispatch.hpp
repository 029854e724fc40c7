//! @file detail/dispatch.hpp
//! Runtime head_dim -> compile-time kernel dispatch.
#pragma once

#include <skv/config.hpp>

#include <type_traits>

SKV_NAMESPACE_BEGIN
namespace detail {

//! Head dims with a compiled kernel. `dispatch_head_dim(dim, f)` calls `f(std::integral_constant<int, D>{})`.
inline constexpr int supported_head_dims[] = {64, 96, 128, 256};
inline constexpr const char* supported_head_dims_text = "64, 96, 128 or 256";

template <class F>
bool dispatch_head_dim(int dim, F&& f) {
  switch (dim) {
  case 64:
    f(std::integral_constant<int, 64>{});
    return true;
  case 96:
    f(std::integral_constant<int, 96>{});
    return true;
  case 128:
    f(std::integral_constant<int, 128>{});
    return true;
  case 256:
    f(std::integral_constant<int, 256>{});
    return true;
  default:
    return false;
  }
}

} // namespace detail
SKV_NAMESPACE_END
