// The host (CPU) definition of the cross-entropy auxiliary of a batch (docs/ops/cross_entropy.md,
// "The auxiliary"): what the CPU kernel of pycmlt::ce_loss_aux returns and what the CPU
// cb_cross_entropy glue uses directly, so the rule exists once in C++ for the CPU.
#pragma once
#include <cstdint>

namespace pycmlt {

struct CeLossAux {
  float grad_scale;  // 1 / denom for reduction mean, else 1
  float w_total;     // sum of the class weights (C without weights)
  double denom;      // the mean's denominator: sum of the class weights of the non-ignored rows
};

// One pass over the targets, which it also validates (ValueError naming the first target that is
// neither in [0, num_classes) nor ignore_index). class_weight: [num_classes] fp32 or nullptr.
CeLossAux ce_loss_aux_host(const int64_t* target, int64_t num_rows, const float* class_weight, int64_t num_classes,
                           int64_t ignore_index, int64_t reduction);

}  // namespace pycmlt
