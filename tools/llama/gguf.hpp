#pragma once
//! \file gguf.hpp
//! Read-only GGUF (version 3) reader over a memory-mapped file.

#include "quant.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace skv::llama {

//! Metadata value type ids (values fixed by the GGUF specification).
enum class gguf_value_type : uint32_t {
    uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6,
    boolean = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};

//! Name of a metadata type ("UINT32", "ARRAY", ...).
std::string_view value_type_name(gguf_value_type t) noexcept;

//! One metadata value. Integers are widened to 64 bits (signedness kept) and
//! floats to double; `type` records what the file stored.
struct gguf_value {
    //! Array payload: element type plus elements (all of that type).
    struct array {
        gguf_value_type elem_type;
        std::vector<gguf_value> items;
    };

    gguf_value_type type = gguf_value_type::uint8;
    std::variant<uint64_t, int64_t, double, bool, std::string, array> data;

    //! Integer value (any integer type or bool); throws std::runtime_error otherwise
    //! or when an unsigned value does not fit.
    int64_t as_int() const;
    //! Numeric value of an integer or float type.
    double as_float() const;
    //! String value; throws for other types.
    const std::string& as_string() const;
    //! Array value; throws for other types.
    const array& as_array() const;
};

//! One tensor described by the file.
struct gguf_tensor {
    std::string name;
    std::vector<int64_t> shape; //!< ggml order: shape[0] is the contiguous (row) dimension
    ggml_type type = ggml_type::f32;
    uint64_t offset = 0;          //!< relative to the start of the data section
    const std::byte* data = nullptr; //!< points into the mapping
    std::size_t n_bytes = 0;

    //! Product of the dimensions.
    int64_t n_elements() const noexcept;
};

//! A parsed, memory-mapped GGUF file. Movable, not copyable; tensor data
//! pointers stay valid while the object lives.
class gguf_file {
public:
    //! Map and parse `path`. Throws std::runtime_error naming the file for a missing
    //! file, a truncated header or tensor data past EOF, bad magic, a version other
    //! than 3, unknown value or tensor type ids, or misaligned tensor offsets.
    static gguf_file open(const std::filesystem::path& path);

    gguf_file(gguf_file&&) noexcept;
    gguf_file& operator=(gguf_file&&) noexcept;
    ~gguf_file();

    const std::filesystem::path& path() const noexcept { return path_; }
    uint32_t version() const noexcept { return version_; }
    std::size_t alignment() const noexcept { return alignment_; }
    std::size_t data_offset() const noexcept { return data_offset_; }
    std::size_t file_size() const noexcept { return size_; }

    //! All metadata, keyed by name.
    const std::map<std::string, gguf_value, std::less<>>& metadata() const noexcept { return metadata_; }
    //! Metadata value or nullptr.
    const gguf_value* find(std::string_view key) const;
    //! Metadata value; throws std::runtime_error naming file and key if absent.
    const gguf_value& at(std::string_view key) const;

    int64_t get_int(std::string_view key) const { return at(key).as_int(); }
    int64_t get_int(std::string_view key, int64_t fallback) const;
    double get_float(std::string_view key) const { return at(key).as_float(); }
    double get_float(std::string_view key, double fallback) const;
    const std::string& get_string(std::string_view key) const { return at(key).as_string(); }
    //! Array of strings (e.g. tokenizer.ggml.tokens).
    std::vector<std::string> get_string_array(std::string_view key) const;
    //! Array of integers (e.g. tokenizer.ggml.token_type).
    std::vector<int64_t> get_int_array(std::string_view key) const;

    //! Tensors in file order.
    const std::vector<gguf_tensor>& tensors() const noexcept { return tensors_; }
    //! Tensor by name or nullptr.
    const gguf_tensor* find_tensor(std::string_view name) const;

    //! Count of tensors per type name, e.g. {"F32": 61, "Q4_1": 210}.
    std::map<std::string, int> type_histogram() const;
    //! Histogram as one line: "F32: 61, Q4_1: 210, Q8_0: 1".
    std::string type_histogram_string() const;

    //! Dequantize a whole tensor to float. Throws naming the tensor for unsupported types.
    std::vector<float> dequantize(const gguf_tensor& t) const;

private:
    gguf_file() = default;

    std::filesystem::path path_;
    struct mapping; // RAII mmap
    std::unique_ptr<mapping> map_;
    const std::byte* base_ = nullptr;
    std::size_t size_ = 0;
    uint32_t version_ = 0;
    std::size_t alignment_ = 32;
    std::size_t data_offset_ = 0;
    std::map<std::string, gguf_value, std::less<>> metadata_;
    std::vector<gguf_tensor> tensors_;
    std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

} // namespace skv::llama
