#!/usr/bin/env python3
"""Peer timings for skv-bench: ggml's CPU decode attention (the kernels llama.cpp runs), same machine, same shapes.

ggml comes from the `llama-cpp-python` package (PyPI; `bash bench/peers/install_ggml.sh` builds it for this CPU),
whose shared libraries are called through ctypes: nothing of ggml is copied into this repository.

  ggml_flash_attn   ggml_flash_attn_ext: one decode query (all query heads) over the whole context, GQA broadcast
  ggml_mul_mat      llama.cpp's other path: K·q (ggml_mul_mat), ggml_soft_max_ext, then V·p over a transposed V

K/V are F16 (llama.cpp's default cache type) and, where ggml accepts it, BF16. Two cache layouts:
  layout:token   llama.cpp's cache: one row of all KV heads per token, each head a strided view (what an engine runs)
  layout:head    each KV head's keys contiguous (the layout skv's own tiers use)

Usage: python3 bench/peers/ggml_attention.py [--quick] [--threads N] [--out FILE.json]
Names follow skv-bench: <stage>/ggml/ctx:<N>/budget:all/shape:<name>/kv:<type>/layout:<l>; times are medians.
"""
import argparse
import ctypes
import os
import sys

from peer_common import timeit, write_results

SHAPES = {"llama3_8b": (32, 8, 128), "smollm2": (9, 3, 64)}
GGML_TYPE = {"float": 0, "half": 1, "bfloat16": 30}
ELT = {"float": 4, "half": 2, "bfloat16": 2}


class InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class CPlan(ctypes.Structure):  # ggml-cpu.h, struct ggml_cplan
    _fields_ = [("work_size", ctypes.c_size_t), ("work_data", ctypes.c_void_p), ("n_threads", ctypes.c_int),
                ("threadpool", ctypes.c_void_p), ("abort_callback", ctypes.c_void_p),
                ("abort_callback_data", ctypes.c_void_p), ("use_ref", ctypes.c_bool)]


def load_ggml():
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed: bash bench/peers/install_ggml.sh")
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    g = {}
    for name in ("libggml-base.so", "libggml-cpu.so"):
        path = os.path.join(lib, name)
        if not os.path.exists(path):
            sys.exit(f"{path} not found: this llama-cpp-python build has no separate ggml libraries")
        g[name] = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    base, cpu = g["libggml-base.so"], g["libggml-cpu.so"]
    P, T = ctypes.c_void_p, ctypes.c_int64
    sig = {
        (base, "ggml_init"): (P, [InitParams]),
        (base, "ggml_free"): (None, [P]),
        (base, "ggml_new_tensor_3d"): (P, [P, ctypes.c_int, T, T, T]),
        (base, "ggml_view_3d"): (P, [P, P, T, T, T, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]),
        (base, "ggml_flash_attn_ext"): (P, [P, P, P, P, P, ctypes.c_float, ctypes.c_float, ctypes.c_float]),
        (base, "ggml_mul_mat"): (P, [P, P, P]),
        (base, "ggml_soft_max_ext"): (P, [P, P, P, ctypes.c_float, ctypes.c_float]),
        (base, "ggml_new_graph"): (P, [P]),
        (base, "ggml_build_forward_expand"): (None, [P, P]),
        (base, "ggml_get_data"): (P, [P]),
        (base, "ggml_nbytes"): (ctypes.c_size_t, [P]),
        (cpu, "ggml_graph_plan"): (CPlan, [P, ctypes.c_int, P]),
        (cpu, "ggml_graph_compute"): (ctypes.c_int, [P, ctypes.POINTER(CPlan)]),
    }
    ns = type("ggml", (), {})()
    for (so, name), (res, args) in sig.items():
        f = getattr(so, name)
        f.restype, f.argtypes = res, args
        setattr(ns, name, f)
    if hasattr(cpu, "ggml_cpu_init"):  # the CPU backend's conversion tables (F16, BF16)
        cpu.ggml_cpu_init.restype, cpu.ggml_cpu_init.argtypes = None, []
        cpu.ggml_cpu_init()
    return ns


def fill(g, t, seed):
    """Fills tensor t's bytes with small random values of its type (the timings do not depend on them)."""
    n = g.ggml_nbytes(t)
    data = g.ggml_get_data(t)
    block = os.urandom(1 << 16)
    # 16-bit types: clear the exponent's top bits so every value is a small finite number
    pattern = bytes(b & 0x3f if i % 2 else b for i, b in enumerate(block))
    for off in range(0, n, len(pattern)):
        ctypes.memmove(data + off, pattern, min(len(pattern), n - off))


class Case:
    """One graph: decode attention of one query token over `ctx` cached tokens."""

    def __init__(self, g, path, ctx, shape, kv, layout, threads):
        hq, hk, d = SHAPES[shape]
        et, elt = GGML_TYPE[kv], ELT[kv]
        cache_bytes = 2 * ctx * hk * d * elt
        self.g = g
        self.ctx = g.ggml_init(InitParams(cache_bytes + hq * d * 4 * 4 + ctx * hq * 4 * 4 + (64 << 20), None, False))
        if not self.ctx:
            raise MemoryError("ggml_init failed")
        q = g.ggml_new_tensor_3d(self.ctx, 0, d, 1, hq)  # [d, n_batch = 1, n_head], F32 like llama.cpp's q
        fill(g, q, 1)
        if path == "ggml_flash_attn":
            if layout == "token":  # cache rows [d * hk] per token; head h = a view with stride d * elt
                kc = g.ggml_new_tensor_3d(self.ctx, et, d, hk, ctx)
                vc = g.ggml_new_tensor_3d(self.ctx, et, d, hk, ctx)
                k = g.ggml_view_3d(self.ctx, kc, d, ctx, hk, d * hk * elt, d * elt, 0)
                v = g.ggml_view_3d(self.ctx, vc, d, ctx, hk, d * hk * elt, d * elt, 0)
                fill(g, kc, 2)
                fill(g, vc, 3)
            else:
                k = g.ggml_new_tensor_3d(self.ctx, et, d, ctx, hk)
                v = g.ggml_new_tensor_3d(self.ctx, et, d, ctx, hk)
                fill(g, k, 2)
                fill(g, v, 3)
            out = g.ggml_flash_attn_ext(self.ctx, q, k, v, None, 1.0 / d ** 0.5, 0.0, 0.0)
        else:  # mul_mat path: scores = K^T q per head, softmax, out = V^T p with V stored transposed
            if layout == "token":
                kc = g.ggml_new_tensor_3d(self.ctx, et, d, hk, ctx)
                k = g.ggml_view_3d(self.ctx, kc, d, ctx, hk, d * hk * elt, d * elt, 0)
                fill(g, kc, 2)
            else:
                k = g.ggml_new_tensor_3d(self.ctx, et, d, ctx, hk)
                fill(g, k, 2)
            vt = g.ggml_new_tensor_3d(self.ctx, et, ctx, d, hk)  # llama.cpp's transposed V cache (non-FA path)
            fill(g, vt, 3)
            kq = g.ggml_mul_mat(self.ctx, k, q)  # [ctx, 1, hq] (GQA broadcast over the head dimension)
            p = g.ggml_soft_max_ext(self.ctx, kq, None, 1.0 / d ** 0.5, 0.0)
            out = g.ggml_mul_mat(self.ctx, vt, p)  # [d, 1, hq]
        self.graph = g.ggml_new_graph(self.ctx)
        g.ggml_build_forward_expand(self.graph, out)
        self.plan = g.ggml_graph_plan(self.graph, threads, None)
        self.work = ctypes.create_string_buffer(max(1, self.plan.work_size))
        self.plan.work_data = ctypes.cast(self.work, ctypes.c_void_p)
        self.bytes = cache_bytes

    def run(self):
        if self.g.ggml_graph_compute(self.graph, ctypes.byref(self.plan)) != 0:
            raise RuntimeError("ggml_graph_compute failed")

    def close(self):
        self.g.ggml_free(self.ctx)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one small case per path (seconds)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="bench/results/ggml_attention.json")
    a = ap.parse_args()
    g = load_ggml()
    contexts = [4096] if a.quick else [4096, 16384, 32768, 65536, 131072]
    shapes = ["smollm2"] if a.quick else ["llama3_8b", "smollm2"]
    rows = []
    for shape in shapes:
        for n in contexts:
            for path in ("ggml_flash_attn", "ggml_mul_mat"):
                for kv in ("half", "bfloat16"):
                    for layout in ("token", "head"):
                        name = f"{path}/ggml/ctx:{n}/budget:all/shape:{shape}/kv:{kv}/layout:{layout}"
                        try:
                            c = Case(g, path, n, shape, kv, layout, a.threads)
                            med, mean, reps = timeit(c.run, min_time=0.3)
                            c.close()
                        except (RuntimeError, MemoryError) as e:
                            print(f"{name}: skipped ({e})", file=sys.stderr)
                            continue
                        rows.append({"name": name, "median_us": med * 1e6, "mean_us": mean * 1e6, "reps": reps,
                                     "GBps": c.bytes / med / 1e9, "threads": a.threads})
                        print(f"{name:80s} {med * 1e6:10.1f} us  {c.bytes / med / 1e9:6.1f} GB/s", flush=True)
    import llama_cpp
    write_results(a.out, "benchmarks", rows, threads=a.threads, llama_cpp_python=llama_cpp.__version__)


if __name__ == "__main__":
    main()
