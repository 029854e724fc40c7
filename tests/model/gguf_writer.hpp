#pragma once
// Test helper: writes GGUF v3 files from scratch, plus straightforward reference
// quantizers, so the reader is checked against an independent writer.

#include "llama/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace skv::test {

using skv::llama::ggml_type;

class gguf_writer {
public:
    // --- metadata
    void add_u8(const std::string& k, uint8_t v) { kv(k, 0); pod(v); }
    void add_i8(const std::string& k, int8_t v) { kv(k, 1); pod(v); }
    void add_u16(const std::string& k, uint16_t v) { kv(k, 2); pod(v); }
    void add_i16(const std::string& k, int16_t v) { kv(k, 3); pod(v); }
    void add_u32(const std::string& k, uint32_t v) { kv(k, 4); pod(v); }
    void add_i32(const std::string& k, int32_t v) { kv(k, 5); pod(v); }
    void add_f32(const std::string& k, float v) { kv(k, 6); pod(v); }
    void add_bool(const std::string& k, bool v) { kv(k, 7); pod(static_cast<uint8_t>(v)); }
    void add_string(const std::string& k, const std::string& v) { kv(k, 8); str(meta_, v); }
    void add_u64(const std::string& k, uint64_t v) { kv(k, 10); pod(v); }
    void add_i64(const std::string& k, int64_t v) { kv(k, 11); pod(v); }
    void add_f64(const std::string& k, double v) { kv(k, 12); pod(v); }
    void add_string_array(const std::string& k, const std::vector<std::string>& v) {
        kv(k, 9);
        pod(uint32_t{8});
        pod(static_cast<uint64_t>(v.size()));
        for (const auto& s : v) str(meta_, s);
    }
    void add_i32_array(const std::string& k, const std::vector<int32_t>& v) {
        kv(k, 9);
        pod(uint32_t{5});
        pod(static_cast<uint64_t>(v.size()));
        for (auto x : v) pod(x);
    }

    // --- tensors (shape in ggml order: shape[0] is the row length)
    void add_tensor(const std::string& name, std::vector<uint64_t> shape, ggml_type type, std::vector<uint8_t> data) {
        tensors_.push_back({name, std::move(shape), type, std::move(data)});
    }
    void add_f32_tensor(const std::string& name, std::vector<uint64_t> shape, const std::vector<float>& v) {
        std::vector<uint8_t> b(v.size() * 4);
        std::memcpy(b.data(), v.data(), b.size());
        add_tensor(name, std::move(shape), ggml_type::f32, std::move(b));
    }

    // Optional override, e.g. to test a non-default general.alignment.
    void set_alignment(uint64_t a) { alignment_ = a; }
    // Corrupt the magic for error tests.
    void set_magic(uint32_t m) { magic_ = m; }

    std::vector<uint8_t> bytes() const {
        std::vector<uint8_t> out;
        put(out, magic_);
        put(out, uint32_t{3});
        put(out, static_cast<uint64_t>(tensors_.size()));
        put(out, static_cast<uint64_t>(n_kv_));
        out.insert(out.end(), meta_.begin(), meta_.end());
        uint64_t offset = 0;
        std::vector<uint64_t> offsets;
        for (const auto& t : tensors_) {
            str(out, t.name);
            put(out, static_cast<uint32_t>(t.shape.size()));
            for (auto d : t.shape) put(out, d);
            put(out, static_cast<uint32_t>(t.type));
            put(out, offset);
            offsets.push_back(offset);
            offset = align(offset + t.data.size());
        }
        out.resize(align(out.size()), 0);
        const std::size_t base = out.size();
        for (std::size_t i = 0; i < tensors_.size(); ++i) {
            out.resize(base + offsets[i], 0);
            out.insert(out.end(), tensors_[i].data.begin(), tensors_[i].data.end());
        }
        return out;
    }

    void write(const std::filesystem::path& p) const { write_bytes(p, bytes()); }

    static void write_bytes(const std::filesystem::path& p, const std::vector<uint8_t>& b) {
        std::ofstream f(p, std::ios::binary | std::ios::trunc);
        f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    }

private:
    struct tensor {
        std::string name;
        std::vector<uint64_t> shape;
        ggml_type type;
        std::vector<uint8_t> data;
    };

    template <class T>
    static void put(std::vector<uint8_t>& out, T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        out.insert(out.end(), p, p + sizeof(T));
    }
    static void str(std::vector<uint8_t>& out, const std::string& s) {
        put(out, static_cast<uint64_t>(s.size()));
        out.insert(out.end(), s.begin(), s.end());
    }
    template <class T>
    void pod(T v) { put(meta_, v); }
    void kv(const std::string& key, uint32_t type) {
        ++n_kv_;
        str(meta_, key);
        put(meta_, type);
    }
    uint64_t align(uint64_t x) const { return (x + alignment_ - 1) / alignment_ * alignment_; }

    uint32_t magic_ = 0x46554747;
    uint64_t alignment_ = 32;
    std::size_t n_kv_ = 0;
    std::vector<uint8_t> meta_;
    std::vector<tensor> tensors_;
};

// Reference quantizers: they return the bytes and the values a correct
// dequantizer must reproduce exactly (computed here from the stored d, m, q).
struct quantized {
    std::vector<uint8_t> bytes;
    std::vector<float> expected;
};

inline void put_half(std::vector<uint8_t>& out, uint16_t h) {
    out.push_back(static_cast<uint8_t>(h & 0xFF));
    out.push_back(static_cast<uint8_t>(h >> 8));
}

inline quantized quantize_f16(const std::vector<float>& x) {
    quantized r;
    for (float v : x) {
        const uint16_t h = llama::fp32_to_fp16(v);
        put_half(r.bytes, h);
        r.expected.push_back(llama::fp16_to_fp32(h));
    }
    return r;
}

inline quantized quantize_q8_0(const std::vector<float>& x) {
    quantized r;
    for (std::size_t b = 0; b < x.size(); b += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
        const uint16_t dh = llama::fp32_to_fp16(amax / 127.0f);
        const float d = llama::fp16_to_fp32(dh);
        put_half(r.bytes, dh);
        for (int j = 0; j < 32; ++j) {
            const int q = d == 0.0f ? 0 : std::clamp(static_cast<int>(std::lround(x[b + j] / d)), -127, 127);
            r.bytes.push_back(static_cast<uint8_t>(static_cast<int8_t>(q)));
            r.expected.push_back(d * static_cast<float>(q));
        }
    }
    return r;
}

inline quantized quantize_q4_1(const std::vector<float>& x) {
    quantized r;
    for (std::size_t b = 0; b < x.size(); b += 32) {
        const auto [lo, hi] = std::minmax_element(x.begin() + static_cast<std::ptrdiff_t>(b),
                                                  x.begin() + static_cast<std::ptrdiff_t>(b + 32));
        const uint16_t dh = llama::fp32_to_fp16((*hi - *lo) / 15.0f), mh = llama::fp32_to_fp16(*lo);
        const float d = llama::fp16_to_fp32(dh), m = llama::fp16_to_fp32(mh);
        put_half(r.bytes, dh);
        put_half(r.bytes, mh);
        int q[32];
        for (int j = 0; j < 32; ++j)
            q[j] = d == 0.0f ? 0 : std::clamp(static_cast<int>(std::lround((x[b + j] - m) / d)), 0, 15);
        // Byte j holds value j (low nibble) and value j + 16 (high nibble).
        for (int j = 0; j < 16; ++j) r.bytes.push_back(static_cast<uint8_t>(q[j] | (q[j + 16] << 4)));
        for (int j = 0; j < 32; ++j) r.expected.push_back(static_cast<float>(q[j]) * d + m);
    }
    return r;
}

} // namespace skv::test
