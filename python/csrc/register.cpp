// SPDX-License-Identifier: MIT
// The operators' schemas and their CPU and CUDA kernels (torch.library; the fake and autograd rules
// are registered in Python, semfocus_torch/ops.py), and the extension module that loads them.
#include <Python.h>
#include <torch/library.h>

#include "ops.hpp"

TORCH_LIBRARY(semfocus, m) {
  m.def(
      "forward(Tensor q, Tensor k, Tensor v, str policy, int[] ints, float[] floats, Tensor? mask, "
      "float? scale) -> (Tensor out, Tensor lse, Tensor stats, Tensor selection_offsets, "
      "Tensor selection)");
  m.def(
      "backward(Tensor d_out, Tensor q, Tensor k, Tensor v, Tensor out, str policy, int[] ints, "
      "float[] floats, Tensor? mask, float? scale, Tensor lse, Tensor stats, "
      "Tensor selection_offsets, Tensor selection) -> (Tensor dq, Tensor dk, Tensor dv)");
}

TORCH_LIBRARY_IMPL(semfocus, CPU, m) {
  m.impl("forward", &semfocus_torch::forward_cpu);
  m.impl("backward", &semfocus_torch::backward_cpu);
}

#if !defined(SEMFOCUS_TORCH_CUDA)
// Built without nvcc: CUDA tensors get a ValueError that says so, not the dispatcher's "could not
// run with arguments from the CUDA backend".
namespace semfocus_torch {
namespace {
[[noreturn]] void no_cuda_kernels() {
  TORCH_CHECK_VALUE(
      false,
      "semfocus_torch: this build has no CUDA kernels (it was built without nvcc, "
      "or with SEMFOCUS_TORCH_CUDA=0); pass CPU tensors, or rebuild on a machine "
      "with nvcc and a CUDA build of torch (README, \"Using semfocus from PyTorch\")");
}
}  // namespace

forward_result forward_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            c10::string_view, at::IntArrayRef, at::ArrayRef<double>,
                            const std::optional<at::Tensor>&, std::optional<double>) {
  no_cuda_kernels();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    c10::string_view, at::IntArrayRef, at::ArrayRef<double>, const std::optional<at::Tensor>&,
    std::optional<double>, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&) {
  no_cuda_kernels();
}
}  // namespace semfocus_torch
#endif

TORCH_LIBRARY_IMPL(semfocus, CUDA, m) {
  m.impl("forward", &semfocus_torch::forward_cuda);
  m.impl("backward", &semfocus_torch::backward_cuda);
}

#if defined(SEMFOCUS_TORCH_CUDA)
#define SEMFOCUS_TORCH_HAS_CUDA 1
#else
#define SEMFOCUS_TORCH_HAS_CUDA 0
#endif

// The extension module: importing semfocus_torch._C runs the registrations above; its attribute
// cuda_kernels says whether the CUDA kernels were built.
static PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr, nullptr};
PyMODINIT_FUNC PyInit__C() {
  PyObject* m = PyModule_Create(&module);
  if (m != nullptr && PyModule_AddIntConstant(m, "cuda_kernels", SEMFOCUS_TORCH_HAS_CUDA) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
