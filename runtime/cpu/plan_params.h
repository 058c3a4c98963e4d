// Kernel parameters from plan attributes, shared by the CPU and CUDA executors.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#ifndef TESSEL_RUNTIME_CPU_PLAN_PARAMS_H_
#define TESSEL_RUNTIME_CPU_PLAN_PARAMS_H_

#include <cstdint>

#include "runtime/cpu/kernels.h"
#include "runtime/schema/plan_generated.h"

namespace tessel::cpu {

inline RopeScalingKind RopeScalingFromPlan(plan::RopeScaling scaling) {
  switch (scaling) {
    case plan::RopeScaling::None: return RopeScalingKind::kNone;
    case plan::RopeScaling::Linear: return RopeScalingKind::kLinear;
    case plan::RopeScaling::Dynamic: return RopeScalingKind::kDynamic;
    case plan::RopeScaling::Llama3: return RopeScalingKind::kLlama3;
    case plan::RopeScaling::Yarn: return RopeScalingKind::kYarn;
  }
  return RopeScalingKind::kNone;
}

/// The RoPE parameters of a plan's RopeAttrs; rotary_dim 0 means the whole head.
inline RopeParams RopeParamsFromPlan(const plan::RopeAttrs& attrs, int64_t head_dim) {
  RopeParams params;
  params.theta = attrs.theta();
  params.rotary_dim = attrs.rotary_dim() > 0 ? attrs.rotary_dim() : head_dim;
  params.interleaved = attrs.interleaved();
  params.scaling = RopeScalingFromPlan(attrs.scaling());
  params.factor = attrs.factor();
  params.original_max_position = attrs.original_max_position();
  params.low_freq_factor = attrs.low_freq_factor();
  params.high_freq_factor = attrs.high_freq_factor();
  params.beta_fast = attrs.beta_fast();
  params.beta_slow = attrs.beta_slow();
  params.attention_factor = attrs.attention_factor();
  return params;
}

}  // namespace tessel::cpu

#endif  // TESSEL_RUNTIME_CPU_PLAN_PARAMS_H_
