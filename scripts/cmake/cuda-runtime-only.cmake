# Stands in for Caffe2's public/cuda.cmake where only the CUDA runtime and its headers are installed (no
# cuBLAS, cuDNN or NVTX development files): enough to compile and link against a CUDA libtorch, which is
# all `npm run check:cuda` does. Caffe2's cuda.cmake returns early when torch::cudart already exists.
set(_cuda_root "$ENV{CUDA_HOME}")
if(NOT _cuda_root)
  set(_cuda_root /usr/local/cuda)
endif()
foreach(_target torch::cudart torch::nvtoolsext caffe2::cuda)
  add_library(${_target} INTERFACE IMPORTED)
endforeach()
set_property(TARGET torch::cudart PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${_cuda_root}/include")
set_property(TARGET torch::cudart PROPERTY INTERFACE_LINK_LIBRARIES "${_cuda_root}/lib64/libcudart.so")
