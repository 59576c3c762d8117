// Torch glue of the CUDA cross-modal contrastive kernels: checks, inverse norms (O((N + M) D) ATen
// ops), the launches of csrc/cuda/contrastive_kernel.cu for both directions, and the O(N D) epilogue
// of the gradient (through the normalisation, and the logit-scale term). No host synchronisation.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/contrastive_kernel.h"
#include "cuda/cuda_check.h"
#include "cuda/torch_dtype.h"

namespace pycmlt {
namespace {

constexpr double kNormEps = 1e-12;

void check_inputs(const at::Tensor& a, const at::Tensor& b, const at::Tensor& logit_scale,
                  const std::optional<at::Tensor>& la, const std::optional<at::Tensor>& lb) {
  TORCH_CHECK_VALUE(a.dim() == 2 && b.dim() == 2, "a and b must be 2-D [N, D] and [M, D], got ", a.sizes(), " and ",
                    b.sizes());
  TORCH_CHECK_VALUE(a.size(1) == b.size(1), "a and b must have the same feature dimension, got ", a.size(1), " and ",
                    b.size(1));
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), "a and b must have the same dtype");
  TORCH_CHECK_VALUE(b.device() == a.device() && logit_scale.device() == a.device(),
                    "a, b and logit_scale must be on the same device");
  TORCH_CHECK_VALUE(logit_scale.numel() == 1, "logit_scale must be a scalar tensor");
  TORCH_CHECK_VALUE(la.has_value() == lb.has_value(), "labels_a and labels_b must be given together");
  if (la.has_value()) {
    TORCH_CHECK_VALUE(la->dim() == 1 && la->size(0) == a.size(0) && la->device() == a.device(),
                      "labels_a must have shape [", a.size(0), "] on ", a.device());
    TORCH_CHECK_VALUE(lb->dim() == 1 && lb->size(0) == b.size(0) && lb->device() == a.device(),
                      "labels_b must have shape [", b.size(0), "] on ", a.device());
  }
}

at::Tensor rows_of(const at::Tensor& x) { return x.stride(-1) == 1 ? x : x.contiguous(); }

at::Tensor norms_of(const at::Tensor& x) {
  return at::linalg_vector_norm(x, 2, at::IntArrayRef{1}, false, at::kFloat);
}

at::Tensor inverse_norms(const at::Tensor& x, bool normalize) {
  if (!normalize) return at::ones({x.size(0)}, x.options().dtype(at::kFloat));
  return norms_of(x).clamp_min(kNormEps).reciprocal();
}

at::Tensor labels_of(const std::optional<at::Tensor>& l) {
  return l.has_value() ? l->to(at::kLong).contiguous() : at::Tensor();
}

ContrastiveRows rows_args(const at::Tensor& a, const at::Tensor& b, const at::Tensor& u, const at::Tensor& v,
                          const at::Tensor& scale, const at::Tensor& la, const at::Tensor& lb, int64_t diag) {
  ContrastiveRows r{};
  r.a = a.data_ptr();
  r.b = b.data_ptr();
  r.stride_a = a.stride(0);
  r.stride_b = b.stride(0);
  r.n = a.size(0);
  r.m = b.size(0);
  r.d = a.size(1);
  r.u = u.data_ptr<float>();
  r.v = v.data_ptr<float>();
  r.logit_scale = scale.data_ptr<float>();
  r.labels_a = la.defined() ? la.data_ptr<int64_t>() : nullptr;
  r.labels_b = lb.defined() ? lb.data_ptr<int64_t>() : nullptr;
  r.diag = diag;
  r.dtype = kernel_dtype(a, "a and b");
  r.stream = c10::cuda::getCurrentCUDAStream().stream();
  return r;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> contrastive_stats_cuda(
    const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& logit_scale,
    const std::optional<at::Tensor>& labels_a, const std::optional<at::Tensor>& labels_b, int64_t diag_offset,
    bool normalize, bool col_stats) {
  check_inputs(a_in, b_in, logit_scale, labels_a, labels_b);
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = rows_of(a_in), b = rows_of(b_in);
  const at::Tensor scale = logit_scale.reshape({}).to(at::kFloat).contiguous();
  const at::Tensor u = inverse_norms(a, normalize), v = inverse_norms(b, normalize);
  const at::Tensor la = labels_of(labels_a), lb = labels_of(labels_b);
  const auto f32 = a.options().dtype(at::kFloat);
  const int64_t N = a.size(0), M = b.size(0);
  at::Tensor row_lse = at::empty({N}, f32), row_pos = at::empty({N}, f32);
  PYCMLT_CHECK_CUDA(launch_contrastive_row_stats(rows_args(a, b, u, v, scale, la, lb, diag_offset),
                                                 row_lse.data_ptr<float>(), row_pos.data_ptr<float>()),
                    "contrastive_stats (rows)");
  if (!col_stats) return {row_lse, row_pos, at::empty({0}, f32), at::empty({0}, f32)};
  at::Tensor col_lse = at::empty({M}, f32), col_pos = at::empty({M}, f32);
  PYCMLT_CHECK_CUDA(launch_contrastive_row_stats(rows_args(b, a, v, u, scale, lb, la, -diag_offset),
                                                 col_lse.data_ptr<float>(), col_pos.data_ptr<float>()),
                    "contrastive_stats (columns)");
  return {row_lse, row_pos, col_lse, col_pos};
}

const float* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

at::Tensor f32_vector(const std::optional<at::Tensor>& t, int64_t n, const at::Tensor& ref, const char* name) {
  if (!t.has_value()) return at::Tensor();
  TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == n && t->device() == ref.device(), name, " must have shape [", n,
                    "] on ", ref.device());
  return t->to(at::kFloat).contiguous();
}

// Gradient through x^ = x / max(|x|, eps) of g_hat (fp32 [R, D]) in x's dtype, and sum_i <x^_i, g_hat_i>.
std::pair<at::Tensor, at::Tensor> finish(const at::Tensor& x, const at::Tensor& g_hat, bool normalize) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor dots = (xf * g_hat).sum(1);
  if (!normalize) return {g_hat.to(x.scalar_type()), dots.sum()};
  const at::Tensor norms = norms_of(x);
  const at::Tensor u = norms.clamp_min(kNormEps).reciprocal();
  const at::Tensor proj = at::where(norms.ge(kNormEps), u * u * u * dots, at::zeros_like(dots));
  const at::Tensor grad = u.unsqueeze(1) * g_hat - proj.unsqueeze(1) * xf;
  return {grad.to(x.scalar_type()), (u * dots).sum()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> contrastive_grad_cuda(
    const at::Tensor& a_in, const at::Tensor& b_in, const at::Tensor& logit_scale,
    const std::optional<at::Tensor>& labels_a, const std::optional<at::Tensor>& labels_b, int64_t diag_offset,
    bool normalize, const at::Tensor& row_lse_in, const at::Tensor& col_lse_in,
    const std::optional<at::Tensor>& grad_row_lse, const std::optional<at::Tensor>& grad_row_pos,
    const std::optional<at::Tensor>& grad_col_lse, const std::optional<at::Tensor>& grad_col_pos) {
  check_inputs(a_in, b_in, logit_scale, labels_a, labels_b);
  const c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = rows_of(a_in), b = rows_of(b_in);
  const int64_t N = a.size(0), M = b.size(0), D = a.size(1);
  const at::Tensor scale = logit_scale.reshape({}).to(at::kFloat).contiguous();
  const at::Tensor u = inverse_norms(a, normalize), v = inverse_norms(b, normalize);
  const at::Tensor la = labels_of(labels_a), lb = labels_of(labels_b);
  const at::Tensor g_rlse = f32_vector(grad_row_lse, N, a, "grad_row_lse");
  const at::Tensor g_rpos = f32_vector(grad_row_pos, N, a, "grad_row_pos");
  const at::Tensor g_clse = f32_vector(grad_col_lse, M, a, "grad_col_lse");
  const at::Tensor g_cpos = f32_vector(grad_col_pos, M, a, "grad_col_pos");
  const at::Tensor row_lse = g_rlse.defined() ? f32_vector(row_lse_in, N, a, "row_lse") : at::Tensor();
  const at::Tensor col_lse = g_clse.defined() ? f32_vector(col_lse_in, M, a, "col_lse") : at::Tensor();
  const auto f32 = a.options().dtype(at::kFloat);
  at::Tensor ga_hat = at::empty({N, D}, f32), gb_hat = at::empty({M, D}, f32);

  ContrastiveGrad ga{};
  ga.row_lse = ptr_or_null(row_lse);
  ga.row_glse = ptr_or_null(g_rlse);
  ga.row_gpos = ptr_or_null(g_rpos);
  ga.col_lse = ptr_or_null(col_lse);
  ga.col_glse = ptr_or_null(g_clse);
  ga.col_gpos = ptr_or_null(g_cpos);
  ga.out = ga_hat.data_ptr<float>();
  PYCMLT_CHECK_CUDA(launch_contrastive_row_grad(rows_args(a, b, u, v, scale, la, lb, diag_offset), ga),
                    "contrastive_grad (rows)");
  // The column direction: the same kernel on the transposed problem, roles of the coefficients swapped.
  ContrastiveGrad gb{};
  gb.row_lse = ptr_or_null(col_lse);
  gb.row_glse = ptr_or_null(g_clse);
  gb.row_gpos = ptr_or_null(g_cpos);
  gb.col_lse = ptr_or_null(row_lse);
  gb.col_glse = ptr_or_null(g_rlse);
  gb.col_gpos = ptr_or_null(g_rpos);
  gb.out = gb_hat.data_ptr<float>();
  PYCMLT_CHECK_CUDA(launch_contrastive_row_grad(rows_args(b, a, v, u, scale, lb, la, -diag_offset), gb),
                    "contrastive_grad (columns)");
  if (D == 0) {
    ga_hat.zero_();
    gb_hat.zero_();
  }
  auto [grad_a, scale_term] = finish(a, ga_hat, normalize);
  auto [grad_b, unused] = finish(b, gb_hat, normalize);
  (void)unused;
  return {grad_a, grad_b, scale_term.reshape({})};
}

}  // namespace

TORCH_LIBRARY_IMPL(pycmlt, CUDA, m) {
  m.impl("contrastive_stats", &contrastive_stats_cuda);
  m.impl("contrastive_grad", &contrastive_grad_cuda);
}

}  // namespace pycmlt
