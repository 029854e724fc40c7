//! @file config.hpp
//! Portability macros only: host/device annotations and the backend-tagged inline namespace.
//!
//! Every macro is wrapped in `#ifndef` so that an embedding engine can override it.
#pragma once

#include <thrust/detail/config/device_system.h>

#ifndef SKV_HOST_DEVICE
#  if defined(__CUDACC__)
#    define SKV_HOST_DEVICE __host__ __device__
#  else
#    define SKV_HOST_DEVICE
#  endif
#endif

#ifndef SKV_FORCEINLINE
#  if defined(__CUDACC__)
#    define SKV_FORCEINLINE __forceinline__
#  else
#    define SKV_FORCEINLINE inline __attribute__((always_inline))
#  endif
#endif

#ifndef SKV_RESTRICT
#  define SKV_RESTRICT __restrict__
#endif

//! Which Thrust device system the library code is compiled for: one of
//! `SKV_BACKEND_CUDA`, `SKV_BACKEND_OMP`, `SKV_BACKEND_TBB`, `SKV_BACKEND_CPP` is defined to 1.
#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#  define SKV_BACKEND_CUDA 1
#  define SKV_BACKEND_NAME "cuda"
#  ifndef SKV_BACKEND_NS
#    define SKV_BACKEND_NS cuda_backend
#  endif
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP
#  define SKV_BACKEND_OMP 1
#  define SKV_BACKEND_NAME "omp"
#  ifndef SKV_BACKEND_NS
#    define SKV_BACKEND_NS omp_backend
#  endif
#elif THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_TBB
#  define SKV_BACKEND_TBB 1
#  define SKV_BACKEND_NAME "tbb"
#  ifndef SKV_BACKEND_NS
#    define SKV_BACKEND_NS tbb_backend
#  endif
#else
#  define SKV_BACKEND_CPP 1
#  define SKV_BACKEND_NAME "cpp"
#  ifndef SKV_BACKEND_NS
#    define SKV_BACKEND_NS cpp_backend
#  endif
#endif

//! Library code sits in `skv::SKV_BACKEND_NS` (an inline namespace), so objects compiled for
//! different backends never define the same symbol and can share one process.
#define SKV_NAMESPACE_BEGIN                                                                                            \
  namespace skv {                                                                                                      \
  inline namespace SKV_BACKEND_NS {
#define SKV_NAMESPACE_END                                                                                              \
  }                                                                                                                    \
  }
