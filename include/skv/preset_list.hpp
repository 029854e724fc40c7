//! @file preset_list.hpp
//! The one list of presets that the benchmarks, the tools and the tests visit, so that a preset added to
//! presets.hpp is measured, evaluated and tested everywhere by adding one line here.
#pragma once

#include <skv/presets.hpp>

#include <string_view>
#include <type_traits>

//! X(name) for every preset of presets.hpp, in that order.
#define SKV_PRESETS(X)                                                                                                 \
  X(full_kv)                                                                                                           \
  X(streaming_llm)                                                                                                     \
  X(sentence_kv)                                                                                                       \
  X(sentence_kv_lossless)                                                                                              \
  X(sentence_kv_paper)                                                                                                 \
  X(snap_kv)                                                                                                           \
  X(pyramid_kv)                                                                                                        \
  X(h2o)                                                                                                               \
  X(chunk_kv)                                                                                                          \
  X(quest)

SKV_NAMESPACE_BEGIN

//! The preset names, in the order of presets.hpp.
inline constexpr std::string_view preset_names[] = {
#define SKV_PRESET_NAME(name) #name,
    SKV_PRESETS(SKV_PRESET_NAME)
#undef SKV_PRESET_NAME
};

//! Calls `f(name, std::type_identity<Preset<T>>{})` for every preset, in order.
template <storage_type T, class F>
void for_each_preset(F&& f) {
#define SKV_PRESET_VISIT(name) f(std::string_view(#name), std::type_identity<name<T>>{});
  SKV_PRESETS(SKV_PRESET_VISIT)
#undef SKV_PRESET_VISIT
}

//! Calls `f(std::type_identity<Preset<T>>{})` for the preset called `name`; false when there is none.
template <storage_type T, class F>
bool with_preset(std::string_view name, F&& f) {
  bool found = false;
  for_each_preset<T>([&](std::string_view n, auto type) {
    if (!found && n == name) {
      found = true;
      f(type);
    }
  });
  return found;
}

SKV_NAMESPACE_END
