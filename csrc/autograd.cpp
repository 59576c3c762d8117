// Autograd kernels of the fused loss ops pycmlt::cb_cross_entropy and pycmlt::cb_bce, in C++ so that an
// eager call is one dispatcher entry (no Python autograd.Function, no argument binding per call).
//
// The kernels write d loss / d logits in the forward pass; first-order backward only scales that
// saved gradient by the incoming one (nothing at all when the incoming gradient is exactly 1, the usual
// `loss.backward()`). A backward that is itself differentiated (create_graph=True: grad mode is on in
// backward) instead recomputes the gradient from the saved inputs through the op's `<op>_grad_reference`
// op, whose kernel (pycmlt/ops/_registration.py) differentiates the torch reference formula with a
// graph, so that a second backward sees the true second derivative, never a constant.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>
#include <typeinfo>
#include <vector>

namespace pycmlt {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using LossAndGrad = std::tuple<at::Tensor, at::Tensor>;
using OptTensor = std::optional<at::Tensor>;

// An eager, plain CPU float32 scalar equal to 1 (read without a device sync). Never under tracing
// (fake/functional/batched tensors, dispatch modes): there the product is always recorded.
bool is_plain_cpu_one(const at::Tensor& g) {
  if (g.numel() != 1 || !g.device().is_cpu() || g.scalar_type() != at::kFloat || g.layout() != at::kStrided) {
    return false;
  }
  const c10::TensorImpl* impl = g.unsafeGetTensorImpl();
  if (typeid(*impl) != typeid(c10::TensorImpl) || c10::impl::TorchDispatchModeTLS::stack_len() > 0) return false;
  constexpr auto traced = c10::DispatchKeySet({c10::DispatchKey::Python, c10::DispatchKey::PythonTLSSnapshot,
                                               c10::DispatchKey::Functionalize});
  if (g.key_set().has_any(traced) || !g.has_storage()) return false;
  return *g.const_data_ptr<float>() == 1.f;
}

// d loss / d logits from the gradient saved in forward and the incoming gradient of the loss: a scalar
// (mean/sum), one value per row ([N]: reduction none of a row loss) or per element (grad's shape). The
// product is computed in fp32 and written in grad's dtype.
at::Tensor scale_saved_grad(const at::Tensor& grad, const at::Tensor& grad_loss) {
  if (grad_loss.dim() == 0 && is_plain_cpu_one(grad_loss)) return grad;
  at::Tensor factor = grad_loss;
  if (grad_loss.dim() != 0 && grad_loss.sizes() != grad.sizes()) {
    std::vector<int64_t> shape(grad.dim(), 1);
    shape[0] = grad.size(0);
    factor = grad_loss.reshape(shape);
  }
  at::Tensor out = at::empty_like(grad);
  return at::mul_out(out, grad, factor);
}

// The op (called below autograd) and its differentiable gradient reference, by name.
struct CrossEntropyOp {
  using Sig = LossAndGrad(const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&,
                          const OptTensor&, double, double, double, int64_t, int64_t, bool);
  static constexpr const char* kName = "pycmlt::cb_cross_entropy";
  static constexpr const char* kReference = "pycmlt::cb_cross_entropy_grad_reference";
};
struct BceOp {
  using Sig = LossAndGrad(const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&, double,
                          int64_t, bool);
  static constexpr const char* kName = "pycmlt::cb_bce";
  static constexpr const char* kReference = "pycmlt::cb_bce_grad_reference";
};

template <class Op>
const c10::TypedOperatorHandle<typename Op::Sig>& op_handle() {
  static const auto handle =
      c10::Dispatcher::singleton().findSchemaOrThrow(Op::kName, "").template typed<typename Op::Sig>();
  return handle;
}

template <class Op>
const c10::OperatorHandle& reference_handle() {
  static const auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(Op::kReference, "");
  return handle;
}

int64_t version_of(const c10::IValue& v) { return v.isTensor() ? v.toTensor()._version() : -1; }

// autograd of `Op`: gradient with respect to its first argument (the logits) only.
template <class Op>
struct FusedLossFunction : public torch::autograd::Function<FusedLossFunction<Op>> {
  template <class... Args>
  static variable_list forward(AutogradContext* ctx, const Args&... args) {
    LossAndGrad out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = op_handle<Op>().call(args...);
    }
    const at::Tensor& grad = std::get<1>(out);
    ctx->mark_non_differentiable({grad});
    ctx->save_for_backward({grad});
    ctx->set_materialize_grads(false);
    // The inputs by reference (no copy) and their versions, for a create_graph=True backward.
    std::vector<c10::IValue> inputs{c10::IValue(args)...};
    std::vector<int64_t> versions;
    for (const auto& v : inputs) versions.push_back(version_of(v));
    ctx->saved_data["inputs"] = c10::ivalue::Tuple::create(std::move(inputs));
    ctx->saved_data["versions"] = versions;
    return {std::get<0>(out), grad};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto inputs = ctx->saved_data["inputs"].toTupleRef().elements();
    variable_list out(inputs.size());
    const at::Tensor& grad_loss = grad_outputs[0];
    if (!grad_loss.defined() || !ctx->needs_input_grad(0)) return out;
    if (at::GradMode::is_enabled()) {  // create_graph=True: a differentiable recomputation
      const auto versions = ctx->saved_data["versions"].toIntVector();
      for (size_t k = 0; k < inputs.size(); ++k) {
        TORCH_CHECK(version_of(inputs[k]) == versions[k], "input ", k, " of ", Op::kName,
                    " was modified in place after the forward pass; the second-order gradient "
                    "(create_graph=True) needs its original value: do not modify it in place before backward");
      }
      torch::jit::Stack stack;
      stack.reserve(inputs.size() + 1);
      stack.emplace_back(grad_loss);
      for (const auto& v : inputs) stack.push_back(v);
      reference_handle<Op>().callBoxed(stack);
      out[0] = stack.at(0).toTensor();
      return out;
    }
    const at::Tensor grad = ctx->get_saved_variables()[0];
    TORCH_CHECK_VALUE(grad.dim() == 2 || inputs[0].toTensor().numel() == 0, Op::kName,
                      " was called with compute_grad=False, so it has no gradient for backward: pass "
                      "compute_grad=True when the logits require grad");
    out[0] = scale_saved_grad(grad, grad_loss);
    return out;
  }
};

// The Autograd kernel: the plain op when no gradient is needed, else the autograd Function.
template <class Op, class... Args>
LossAndGrad autograd_kernel(const at::Tensor& logits, const Args&... rest) {
  if (!(at::GradMode::is_enabled() && logits.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return op_handle<Op>().call(logits, rest...);
  }
  auto out = FusedLossFunction<Op>::apply(logits, rest...);
  return {out[0], out[1]};
}

LossAndGrad cb_cross_entropy_autograd(const at::Tensor& logits, const at::Tensor& target, const OptTensor& cw,
                                      const OptTensor& margins, const OptTensor& bias, double scale,
                                      double focal_gamma, double label_smoothing, int64_t ignore_index,
                                      int64_t reduction, bool compute_grad) {
  return autograd_kernel<CrossEntropyOp>(logits, target, cw, margins, bias, scale, focal_gamma, label_smoothing,
                                         ignore_index, reduction, compute_grad);
}

LossAndGrad cb_bce_autograd(const at::Tensor& logits, const at::Tensor& targets, const OptTensor& weight,
                            const OptTensor& pos_weight, double focal_gamma, int64_t reduction, bool compute_grad) {
  return autograd_kernel<BceOp>(logits, targets, weight, pos_weight, focal_gamma, reduction, compute_grad);
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, Autograd, m) {
  m.impl("cb_cross_entropy", &cb_cross_entropy_autograd);
  m.impl("cb_bce", &cb_bce_autograd);
}

}  // namespace pycmlt
