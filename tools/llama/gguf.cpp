#include "gguf.hpp"

#include <cstring>
#include <fcntl.h>
#include <sstream>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace skv::llama {

namespace {

constexpr uint32_t gguf_magic = 0x46554747; // "GGUF" read as little-endian u32
constexpr int max_array_depth = 4;           // nested arrays: guard against hostile files

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
    throw std::runtime_error("gguf: " + path.string() + ": " + what);
}

// Bounds-checked little-endian cursor over the mapping.
class cursor {
public:
    cursor(const std::filesystem::path& path, const std::byte* base, std::size_t size)
        : path_(path), base_(base), size_(size) {}

    std::size_t pos() const noexcept { return pos_; }

    const std::byte* take(std::size_t n, const char* what) {
        if (n > size_ - pos_) {
            std::ostringstream os;
            os << "truncated file: reading " << what << " needs " << n << " bytes at offset " << pos_
               << " but the file has " << size_ << " bytes";
            fail(path_, os.str());
        }
        const std::byte* p = base_ + pos_;
        pos_ += n;
        return p;
    }

    template <class T>
    T read(const char* what) {
        T v;
        std::memcpy(&v, take(sizeof(T), what), sizeof(T));
        return v;
    }

    std::string read_string(const char* what) {
        const auto n = read<uint64_t>(what);
        const auto* p = take(n, what);
        return std::string(reinterpret_cast<const char*>(p), n);
    }

private:
    const std::filesystem::path& path_;
    const std::byte* base_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

gguf_value read_value(cursor& c, gguf_value_type type, const std::filesystem::path& path,
                      const std::string& key, int depth) {
    gguf_value v;
    v.type = type;
    const char* what = "metadata value";
    switch (type) {
    case gguf_value_type::uint8: v.data = uint64_t{c.read<uint8_t>(what)}; break;
    case gguf_value_type::int8: v.data = int64_t{c.read<int8_t>(what)}; break;
    case gguf_value_type::uint16: v.data = uint64_t{c.read<uint16_t>(what)}; break;
    case gguf_value_type::int16: v.data = int64_t{c.read<int16_t>(what)}; break;
    case gguf_value_type::uint32: v.data = uint64_t{c.read<uint32_t>(what)}; break;
    case gguf_value_type::int32: v.data = int64_t{c.read<int32_t>(what)}; break;
    case gguf_value_type::uint64: v.data = c.read<uint64_t>(what); break;
    case gguf_value_type::int64: v.data = c.read<int64_t>(what); break;
    case gguf_value_type::float32: v.data = double{c.read<float>(what)}; break;
    case gguf_value_type::float64: v.data = c.read<double>(what); break;
    case gguf_value_type::boolean: v.data = c.read<uint8_t>(what) != 0; break;
    case gguf_value_type::string: v.data = c.read_string(what); break;
    case gguf_value_type::array: {
        if (depth >= max_array_depth) fail(path, "metadata '" + key + "': arrays nested too deeply");
        gguf_value::array arr;
        arr.elem_type = static_cast<gguf_value_type>(c.read<uint32_t>("array type"));
        const auto n = c.read<uint64_t>("array length");
        // Cap the reservation: a corrupt count then fails on truncation, not on allocation.
        if (n > 0 && arr.elem_type != gguf_value_type::array)
            arr.items.reserve(static_cast<std::size_t>(std::min<uint64_t>(n, 1u << 20)));
        for (uint64_t i = 0; i < n; ++i) arr.items.push_back(read_value(c, arr.elem_type, path, key, depth + 1));
        v.data = std::move(arr);
        break;
    }
    default:
        fail(path, "metadata '" + key + "' has unknown value type " +
                       std::to_string(static_cast<uint32_t>(type)));
    }
    return v;
}

std::string type_error(const gguf_value& v, const char* wanted) {
    return std::string("metadata value of type ") + std::string(value_type_name(v.type)) + " is not " + wanted;
}

} // namespace

std::string_view value_type_name(gguf_value_type t) noexcept {
    switch (t) {
    case gguf_value_type::uint8: return "UINT8";
    case gguf_value_type::int8: return "INT8";
    case gguf_value_type::uint16: return "UINT16";
    case gguf_value_type::int16: return "INT16";
    case gguf_value_type::uint32: return "UINT32";
    case gguf_value_type::int32: return "INT32";
    case gguf_value_type::float32: return "FLOAT32";
    case gguf_value_type::boolean: return "BOOL";
    case gguf_value_type::string: return "STRING";
    case gguf_value_type::array: return "ARRAY";
    case gguf_value_type::uint64: return "UINT64";
    case gguf_value_type::int64: return "INT64";
    case gguf_value_type::float64: return "FLOAT64";
    }
    return "unknown";
}

int64_t gguf_value::as_int() const {
    if (const auto* u = std::get_if<uint64_t>(&data)) {
        if (*u > static_cast<uint64_t>(INT64_MAX)) throw std::runtime_error("metadata value out of int64 range");
        return static_cast<int64_t>(*u);
    }
    if (const auto* i = std::get_if<int64_t>(&data)) return *i;
    if (const auto* b = std::get_if<bool>(&data)) return *b ? 1 : 0;
    throw std::runtime_error(type_error(*this, "an integer"));
}

double gguf_value::as_float() const {
    if (const auto* d = std::get_if<double>(&data)) return *d;
    if (const auto* u = std::get_if<uint64_t>(&data)) return static_cast<double>(*u);
    if (const auto* i = std::get_if<int64_t>(&data)) return static_cast<double>(*i);
    throw std::runtime_error(type_error(*this, "a number"));
}

const std::string& gguf_value::as_string() const {
    if (const auto* s = std::get_if<std::string>(&data)) return *s;
    throw std::runtime_error(type_error(*this, "a string"));
}

const gguf_value::array& gguf_value::as_array() const {
    if (const auto* a = std::get_if<array>(&data)) return *a;
    throw std::runtime_error(type_error(*this, "an array"));
}

int64_t gguf_tensor::n_elements() const noexcept {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
}

struct gguf_file::mapping {
    void* addr = nullptr;
    std::size_t size = 0;
    ~mapping() {
        if (addr != nullptr && addr != MAP_FAILED) ::munmap(addr, size);
    }
};

gguf_file::gguf_file(gguf_file&&) noexcept = default;
gguf_file& gguf_file::operator=(gguf_file&&) noexcept = default;
gguf_file::~gguf_file() = default;

gguf_file gguf_file::open(const std::filesystem::path& path) {
    gguf_file f;
    f.path_ = path;

    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        fail(path, std::string("cannot stat: ") + std::strerror(err));
    }
    f.size_ = static_cast<std::size_t>(st.st_size);
    f.map_ = std::make_unique<mapping>();
    if (f.size_ > 0) {
        void* addr = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
        const int err = errno;
        ::close(fd);
        if (addr == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(err));
        f.map_->addr = addr;
        f.map_->size = f.size_;
        f.base_ = static_cast<const std::byte*>(addr);
    } else {
        ::close(fd);
    }

    cursor c(f.path_, f.base_, f.size_);
    if (f.size_ < 4) fail(path, "truncated file: " + std::to_string(f.size_) + " bytes, too short for a GGUF header");
    const auto magic = c.read<uint32_t>("magic");
    if (magic != gguf_magic) {
        char shown[5] = {};
        std::memcpy(shown, f.base_, 4);
        for (char& ch : shown)
            if (ch != 0 && (ch < 32 || ch > 126)) ch = '?';
        fail(path, std::string("bad magic '") + shown + "': not a GGUF file");
    }
    f.version_ = c.read<uint32_t>("version");
    if (f.version_ != 3) fail(path, "unsupported GGUF version " + std::to_string(f.version_) + " (only 3 is supported)");
    const auto n_tensors = c.read<uint64_t>("tensor count");
    const auto n_kv = c.read<uint64_t>("metadata count");

    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = c.read_string("metadata key");
        const auto type = static_cast<gguf_value_type>(c.read<uint32_t>("metadata type"));
        gguf_value v = read_value(c, type, path, key, 0);
        if (!f.metadata_.emplace(key, std::move(v)).second) fail(path, "duplicate metadata key '" + key + "'");
    }

    if (const auto* a = f.find("general.alignment")) {
        const int64_t al = a->as_int();
        if (al <= 0 || (al & (al - 1)) != 0) fail(path, "general.alignment " + std::to_string(al) + " is not a power of two");
        f.alignment_ = static_cast<std::size_t>(al);
    }

    // Tensor infos cannot be more numerous than the bytes left: cap the reservation.
    f.tensors_.reserve(static_cast<std::size_t>(std::min<uint64_t>(n_tensors, f.size_)));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        gguf_tensor t;
        t.name = c.read_string("tensor name");
        const auto n_dims = c.read<uint32_t>("tensor dimension count");
        if (n_dims == 0 || n_dims > 4) fail(path, "tensor '" + t.name + "' has " + std::to_string(n_dims) + " dimensions (1..4 allowed)");
        uint64_t n_elem = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const auto dim = c.read<uint64_t>("tensor dimension");
            // Bound the element count so size arithmetic below cannot overflow.
            if (dim == 0 || dim > (uint64_t{1} << 48) / n_elem)
                fail(path, "tensor '" + t.name + "' has invalid dimension " + std::to_string(dim));
            n_elem *= dim;
            t.shape.push_back(static_cast<int64_t>(dim));
        }
        const auto type_id = c.read<uint32_t>("tensor type");
        t.type = static_cast<ggml_type>(type_id);
        t.offset = c.read<uint64_t>("tensor offset");
        const auto traits = type_traits(t.type);
        if (!traits) fail(path, "tensor '" + t.name + "' has unknown type id " + std::to_string(type_id));
        if (t.shape[0] % traits->block_size != 0)
            fail(path, "tensor '" + t.name + "' row length " + std::to_string(t.shape[0]) +
                           " is not a multiple of the " + std::string(traits->name) + " block size");
        t.n_bytes = static_cast<std::size_t>(t.n_elements() / traits->block_size * traits->type_size);
        if (t.offset % f.alignment_ != 0)
            fail(path, "tensor '" + t.name + "' offset " + std::to_string(t.offset) + " is not aligned to " + std::to_string(f.alignment_));
        if (f.tensor_index_.count(t.name) != 0) fail(path, "duplicate tensor '" + t.name + "'");
        f.tensor_index_.emplace(t.name, f.tensors_.size());
        f.tensors_.push_back(std::move(t));
    }

    f.data_offset_ = (c.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
    for (auto& t : f.tensors_) {
        const uint64_t begin = f.data_offset_ + t.offset;
        if (t.offset > f.size_ || begin > f.size_ || t.n_bytes > f.size_ - begin) {
            std::ostringstream os;
            os << "truncated file: tensor '" << t.name << "' data [" << begin << ", " << begin + t.n_bytes
               << ") extends past the end of the file (" << f.size_ << " bytes)";
            fail(path, os.str());
        }
        t.data = f.base_ + begin;
    }
    return f;
}

const gguf_value* gguf_file::find(std::string_view key) const {
    const auto it = metadata_.find(key);
    return it == metadata_.end() ? nullptr : &it->second;
}

const gguf_value& gguf_file::at(std::string_view key) const {
    if (const auto* v = find(key)) return *v;
    fail(path_, "missing metadata key '" + std::string(key) + "'");
}

int64_t gguf_file::get_int(std::string_view key, int64_t fallback) const {
    const auto* v = find(key);
    return v ? v->as_int() : fallback;
}

double gguf_file::get_float(std::string_view key, double fallback) const {
    const auto* v = find(key);
    return v ? v->as_float() : fallback;
}

std::vector<std::string> gguf_file::get_string_array(std::string_view key) const {
    const auto& arr = at(key).as_array();
    if (arr.elem_type != gguf_value_type::string)
        fail(path_, "metadata '" + std::string(key) + "' is an array of " +
                        std::string(value_type_name(arr.elem_type)) + ", not of STRING");
    std::vector<std::string> out;
    out.reserve(arr.items.size());
    for (const auto& it : arr.items) out.push_back(it.as_string());
    return out;
}

std::vector<int64_t> gguf_file::get_int_array(std::string_view key) const {
    const auto& arr = at(key).as_array();
    std::vector<int64_t> out;
    out.reserve(arr.items.size());
    try {
        for (const auto& it : arr.items) out.push_back(it.as_int());
    } catch (const std::runtime_error& e) {
        fail(path_, "metadata '" + std::string(key) + "': " + e.what());
    }
    return out;
}

const gguf_tensor* gguf_file::find_tensor(std::string_view name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::map<std::string, int> gguf_file::type_histogram() const {
    std::map<std::string, int> h;
    for (const auto& t : tensors_) ++h[std::string(type_name(t.type))];
    return h;
}

std::string gguf_file::type_histogram_string() const {
    std::string s;
    for (const auto& [name, n] : type_histogram()) {
        if (!s.empty()) s += ", ";
        s += name + ": " + std::to_string(n);
    }
    return s;
}

std::vector<float> gguf_file::dequantize(const gguf_tensor& t) const {
    if (!is_supported(t.type)) {
        fail(path_, "tensor '" + t.name + "' has type " + std::string(type_name(t.type)) + " (" +
                        std::to_string(static_cast<uint32_t>(t.type)) + "); supported: " +
                        std::string(supported_type_names()));
    }
    std::vector<float> out(static_cast<std::size_t>(t.n_elements()));
    skv::llama::dequantize(t.type, t.data, out.data(), t.n_elements());
    return out;
}

} // namespace skv::llama
