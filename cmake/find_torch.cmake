# LibTorch: from Torch_DIR / CMAKE_PREFIX_PATH when given, else from the torch wheel
# in the repo's .venv (torch.utils.cmake_prefix_path).
if(NOT Torch_DIR AND NOT DEFINED ENV{Torch_DIR})
  find_package(Torch QUIET)
  if(NOT Torch_FOUND)
    set(_py ${CMAKE_SOURCE_DIR}/.venv/bin/python)
    if(NOT EXISTS ${_py})
      message(FATAL_ERROR "LibTorch not found: pass -DTorch_DIR=... or run scripts/setup.sh to create .venv")
    endif()
    execute_process(COMMAND ${_py} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _rc)
    if(NOT _rc EQUAL 0)
      message(FATAL_ERROR "LibTorch not found: ${_py} cannot import torch (run scripts/setup.sh)")
    endif()
    list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
  endif()
endif()
# Torch's CMake config probes for installed GPUs with try_run when no arch list is set;
# there are none on our build machines, so name the archs we target (A100, H100/H200).
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
find_package(Torch REQUIRED)
# TorchConfig puts its own flags in TORCH_CXX_FLAGS (the ABI define); keep them.
set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} ${TORCH_CXX_FLAGS}")
message(STATUS "LibTorch ${Torch_VERSION} from ${Torch_DIR}")
