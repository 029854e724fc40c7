// doctest runner shared by every backend's test binary.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <skv/config.hpp>

#include <cstdio>

#if defined(SKV_BACKEND_CUDA)
#  include <cuda_runtime.h>
#endif

int main(int argc, char** argv) {
#if defined(SKV_BACKEND_CUDA)
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("skv tests (cuda backend): no CUDA device present; the test cases were compiled but not run.\n");
    return 0;
  }
#endif
  std::printf("skv tests, backend: %s\n", SKV_BACKEND_NAME);
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
