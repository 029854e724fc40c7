//! @file error.hpp
//! Runtime errors of the host API: each names the operation, the argument, its value and what is allowed.
#pragma once

#include <skv/config.hpp>

#include <sstream>
#include <stdexcept>
#include <string>

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

namespace detail {
template <class V>
[[noreturn]] inline void throw_invalid(const char* where, const char* argument, const V& value,
                                       const std::string& allowed) {
  std::ostringstream os;
  os << where << ": argument '" << argument << "' is " << value << "; allowed: " << allowed;
  throw skv::invalid_argument(os.str());
}

//! `require(cond, where, arg, value, allowed)`: throws `skv::invalid_argument` when `cond` is false.
template <class V>
inline void require(bool cond, const char* where, const char* argument, const V& value, const std::string& allowed) {
  if (!cond) throw_invalid(where, argument, value, allowed);
}
} // namespace detail

} // namespace skv
