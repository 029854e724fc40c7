//! @file error.hpp
//! Runtime errors of the host API: each names the operation, the argument, its value and what is allowed.
#pragma once

#include <skv/config.hpp>

#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace skv {

//! Thrown for bad runtime input. The cache validates before it mutates anything, so after an
//! `invalid_argument` every layer still holds exactly what it held before the call.
class invalid_argument : public std::invalid_argument {
public:
  using std::invalid_argument::invalid_argument;
};

//! Thrown when an operation is called in the wrong order (e.g. decode before prefill).
class logic_error : public std::logic_error {
public:
  using std::logic_error::logic_error;
};

} // namespace skv

// The helpers sit in the backend-tagged namespace, as every caller does: a plain `skv::detail` here would be a
// namespace of its own or the backend's, depending on which header came first (an inline namespace's members are
// found, and reopened, through its parent).
SKV_NAMESPACE_BEGIN
namespace detail {
template <class V>
[[noreturn]] inline void throw_invalid(const char* where, const char* argument, const V& value,
                                       const std::string& allowed) {
  std::ostringstream os;
  os << where << ": argument '" << argument << "' is " << value << "; allowed: " << allowed;
  throw skv::invalid_argument(os.str());
}

//! `require(cond, where, arg, value, allowed)`: throws `skv::invalid_argument` when `cond` is false. `allowed` is
//! a string, or a callable returning one, called only on failure (the decode path builds no strings).
template <class V, class Allowed>
inline void require(bool cond, const char* where, const char* argument, const V& value, Allowed&& allowed) {
  if (cond) [[likely]]
    return;
  if constexpr (std::is_invocable_v<Allowed>)
    throw_invalid(where, argument, value, std::string(allowed()));
  else
    throw_invalid(where, argument, value, std::string(allowed));
}

//! "[0, n)" — the allowed range of an index.
inline std::string index_range(long long n) { return "[0, " + std::to_string(n) + ")"; }
} // namespace detail
SKV_NAMESPACE_END
