# Locates CCCL (Thrust/CUB/libcudacxx) and provides skv_backend_target(<name> <CPP|OMP|TBB|CUDA>):
# an INTERFACE target = skv::skv + Thrust configured for that device system.
#
# Search order: a user-given CCCL_ROOT (a CCCL checkout or install: include/ or the folder holding thrust/),
# the CUDA toolkit (its include/cccl), and PyPI's cuda-cccl / nvidia-cuda-cccl packages (found through
# python3). Only the headers are needed for the CPU backends.
include_guard(GLOBAL)

set(CCCL_ROOT "" CACHE PATH "Folder with CCCL headers (contains thrust/), or a CCCL install prefix")

function(_skv_python_cccl_hints out)
  set(hints "")
  find_program(_skv_python3 python3)
  if(_skv_python3)
    execute_process(
      COMMAND ${_skv_python3} -c "import site,sys; print(';'.join(site.getsitepackages()+[site.getusersitepackages()]))"
      OUTPUT_VARIABLE sp OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    foreach(d IN LISTS sp)
      list(APPEND hints "${d}/cuda/cccl/headers/include" "${d}/nvidia/cuda_cccl/include" "${d}/nvidia/cu13/include/cccl"
           "${d}/nvidia/cu12/include/cccl" "${d}/cuda/cccl/include")
    endforeach()
  endif()
  set(${out} "${hints}" PARENT_SCOPE)
endfunction()

if(NOT SKV_CCCL_INCLUDE_DIR)
  _skv_python_cccl_hints(_skv_py_hints)
  find_path(SKV_CCCL_INCLUDE_DIR thrust/version.h
    HINTS ${CCCL_ROOT} ${CCCL_ROOT}/include ${CCCL_ROOT}/thrust/.. ${CUDAToolkit_INCLUDE_DIRS}/cccl
          /usr/local/cuda/include/cccl ${_skv_py_hints}
    NO_DEFAULT_PATH)
endif()
if(NOT SKV_CCCL_INCLUDE_DIR)
  message(FATAL_ERROR "skv: CCCL headers (thrust/version.h) not found. Install the CUDA toolkit, or "
                      "`pip install cuda-cccl`, or pass -DCCCL_ROOT=<folder containing thrust/>.")
endif()
file(STRINGS "${SKV_CCCL_INCLUDE_DIR}/thrust/version.h" _skv_tv REGEX "#define THRUST_VERSION [0-9]+")
string(REGEX MATCH "[0-9]+" _skv_tv "${_skv_tv}")
if(_skv_tv LESS 200500)
  message(FATAL_ERROR "skv: Thrust ${_skv_tv} at ${SKV_CCCL_INCLUDE_DIR} is too old (need CCCL >= 2.5; Debian's "
                      "libthrust-dev is 1.17). Point CCCL_ROOT at a newer CCCL.")
endif()
message(STATUS "skv: CCCL headers at ${SKV_CCCL_INCLUDE_DIR} (THRUST_VERSION ${_skv_tv})")

function(skv_backend_target name system)
  if(TARGET ${name})
    return()
  endif()
  add_library(${name} INTERFACE)
  target_link_libraries(${name} INTERFACE skv::skv)
  target_include_directories(${name} SYSTEM INTERFACE ${SKV_CCCL_INCLUDE_DIR})
  target_compile_definitions(${name} INTERFACE THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_${system}
                                               THRUST_HOST_SYSTEM=THRUST_HOST_SYSTEM_CPP)
  if(system STREQUAL "OMP")
    find_package(OpenMP REQUIRED COMPONENTS CXX)
    target_link_libraries(${name} INTERFACE OpenMP::OpenMP_CXX)
  elseif(system STREQUAL "TBB")
    find_package(TBB REQUIRED)
    target_link_libraries(${name} INTERFACE TBB::tbb)
  elseif(system STREQUAL "CUDA")
    target_compile_options(${name} INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --extended-lambda
                                                                        --expt-relaxed-constexpr>)
  endif()
endfunction()
