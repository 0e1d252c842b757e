// SPDX-License-Identifier: MIT
// The operators' schemas and CPU kernels (torch.library; their fake and autograd rules are
// registered in Python, semfocus_torch/ops.py), and the extension module that loads them.
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

// An empty module: importing semfocus_torch._C runs the registrations above.
static PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr, nullptr};
PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
