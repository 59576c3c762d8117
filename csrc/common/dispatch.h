// dtype dispatch shared by the CPU and CUDA glue: every kernel takes fp32, fp16 or bf16 inputs.
#pragma once
#include <ATen/Dispatch.h>

#define PYCMLT_DISPATCH_FLOAT_TYPES(TYPE, NAME, ...)        \
  AT_DISPATCH_SWITCH(TYPE, NAME,                            \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))
