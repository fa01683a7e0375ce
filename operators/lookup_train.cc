// Training-side kernels of the lookup layers (lcnn_gluon.nn), one memory pass each. The
// same arithmetic as the MXNet-operator form in nn.py, which chains 4 to 5 elementwise
// operators, each with a temporary as large as P (AlexNet-accurate's fc6: 151M entries).
//
// The rule's parameters (eps, l1 = lambda * eps) come from lcnn_gluon/lookup/rule.py, which
// owns the rule; alive, the kept-mask, is uint8 (one byte per entry), everything else float32.
//
//   lcnn_lookup_threshold(lookup, alive; eps) -> lookup * alive * (|lookup| > eps)
//       backward: the output gradient on the same entries, 0 elsewhere (alive: no gradient)
//   lcnn_lookup_l1(grad, lookup; strength, eps) -> grad + strength * sign(lookup) where
//       |lookup| > eps (called with out=grad)
//   lcnn_lookup_prune(lookup, alive; eps) -> lookup * alive' with alive' = alive * (|lookup| > eps);
//       alive is updated in place (called with out=lookup)
//   lcnn_lookup_sgd(lookup, grad, mom, alive; lr, wd, momentum, rescale_grad, clip_gradient,
//       eps, l1) -> the three above around MXNet's sgd_mom_update, in one pass (out=lookup;
//       mom and alive updated in place):
//         g = clip(rescale_grad * grad + l1 * sign(lookup)), sign on live entries only
//         mom = momentum * mom - lr * wd * lookup - lr * g;  lookup += mom;  prune
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "lookup_train_kernels.h"
#include "mxnet/lib_api.h"

using namespace mxnet::ext;  // NOLINT
using Attrs = std::unordered_map<std::string, std::string>;

// ------------------------------------------------------------------ attributes
static MXReturnValue GetFloat(const Attrs& attrs, const char* op, const char* key, float* value,
                              bool signed_ok = false) {
  auto it = attrs.find(key);
  if (it == attrs.end()) {
    MX_ERROR_MSG << op << ": missing attribute '" << key << "'";
    return MX_FAIL;
  }
  try {
    size_t used = 0;
    *value = std::stof(it->second, &used);
    if (used != it->second.size() || !std::isfinite(*value) || (*value < 0 && !signed_ok))
      throw std::invalid_argument("");
  } catch (const std::exception&) {
    MX_ERROR_MSG << op << ": attribute " << key << "='" << it->second << "' is not a finite number"
                 << (signed_ok ? "" : " >= 0");
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// Every input float32 but the kept-mask (input `alive`, one byte per entry: uint8).
static MXReturnValue CheckTypes(const char* op, int alive, std::vector<int>* in, std::vector<int>* out) {
  for (int i = 0; i < static_cast<int>(in->size()); ++i) {
    const int want = i == alive ? kUint8 : kFloat32;
    if ((*in)[i] != want) {
      MX_ERROR_MSG << op << ": input " << i << " must be " << (i == alive ? "uint8 (the kept-mask)" : "float32")
                   << ", got dtype code " << (*in)[i];
      return MX_FAIL;
    }
  }
  for (auto& t : *out) t = kFloat32;
  return MX_SUCCESS;
}

static const int kNoMask = -1;

// Two inputs of one shape; the output has it too.
static MXReturnValue SameShapes(const char* op, std::vector<std::vector<unsigned int>>* in,
                                std::vector<std::vector<unsigned int>>* out) {
  if ((*in)[0] != (*in)[1]) {
    MX_ERROR_MSG << op << ": both inputs must have the same shape";
    return MX_FAIL;
  }
  (*out)[0] = (*in)[0];
  return MX_SUCCESS;
}

static int64_t Size(const MXTensor& t) {
  int64_t n = 1;
  for (auto d : t.shape) n *= d;
  return n;
}


// ------------------------------------------------------------------ threshold
static MXReturnValue ThresholdForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                      std::vector<MXTensor>* outputs, const OpResource& res) {
  float eps;
  if (GetFloat(attrs, "lcnn_lookup_threshold", "eps", &eps) != MX_SUCCESS) return MX_FAIL;
  const float* p = (*inputs)[0].data<float>();
  const uint8_t* a = (*inputs)[1].data<uint8_t>();
  float* y = (*outputs)[0].data<float>();
  const int64_t n = Size((*inputs)[0]);
  ThresholdKernel(p, a, eps, n, y);
  return MX_SUCCESS;
}

// inputs: [0] output gradient, [1] lookup, [2] alive, [3] output; outputs: [0] lookup's
// gradient, [1] alive's (never requested: alive is not differentiable, left unwritten)
static MXReturnValue ThresholdBackward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                       std::vector<MXTensor>* outputs, const OpResource& res) {
  float eps;
  if (GetFloat(attrs, "lcnn_lookup_threshold", "eps", &eps) != MX_SUCCESS) return MX_FAIL;
  const float *g = (*inputs)[0].data<float>(), *p = (*inputs)[1].data<float>();
  const uint8_t* a = (*inputs)[2].data<uint8_t>();
  float* gp = (*outputs)[0].data<float>();
  const int64_t n = Size((*inputs)[1]);
  ThresholdGradKernel(g, p, a, eps, n, gp);
  return MX_SUCCESS;
}

static MXReturnValue ThresholdAttrs(const Attrs& attrs, int* num_in, int* num_out) {
  float eps;
  *num_in = 2, *num_out = 1;
  return GetFloat(attrs, "lcnn_lookup_threshold", "eps", &eps);
}

static MXReturnValue ThresholdType(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  return CheckTypes("lcnn_lookup_threshold", 1, in, out);
}

static MXReturnValue ThresholdShape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                                    std::vector<std::vector<unsigned int>>* out) {
  return SameShapes("lcnn_lookup_threshold (lookup, alive)", in, out);
}

REGISTER_OP(lcnn_lookup_threshold)
    .setParseAttrs(ThresholdAttrs)
    .setInferType(ThresholdType)
    .setInferShape(ThresholdShape)
    .setForward(ThresholdForward, "cpu")
    .setBackward(ThresholdBackward, "cpu");

// ------------------------------------------------------------------ L1
static MXReturnValue L1Forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                               std::vector<MXTensor>* outputs, const OpResource& res) {
  float eps, strength;
  if (GetFloat(attrs, "lcnn_lookup_l1", "eps", &eps) != MX_SUCCESS ||
      GetFloat(attrs, "lcnn_lookup_l1", "strength", &strength) != MX_SUCCESS)
    return MX_FAIL;
  const float *g = (*inputs)[0].data<float>(), *p = (*inputs)[1].data<float>();
  float* y = (*outputs)[0].data<float>();  // may be g itself (out=grad)
  const int64_t n = Size((*inputs)[0]);
  L1Kernel(g, p, eps, strength, n, y);
  return MX_SUCCESS;
}

static MXReturnValue L1Attrs(const Attrs& attrs, int* num_in, int* num_out) {
  float v;
  *num_in = 2, *num_out = 1;
  if (GetFloat(attrs, "lcnn_lookup_l1", "eps", &v) != MX_SUCCESS) return MX_FAIL;
  return GetFloat(attrs, "lcnn_lookup_l1", "strength", &v);
}

static MXReturnValue L1Type(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  return CheckTypes("lcnn_lookup_l1", kNoMask, in, out);
}

static MXReturnValue L1Shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                             std::vector<std::vector<unsigned int>>* out) {
  return SameShapes("lcnn_lookup_l1 (grad, lookup)", in, out);
}

REGISTER_OP(lcnn_lookup_l1)
    .setParseAttrs(L1Attrs)
    .setInferType(L1Type)
    .setInferShape(L1Shape)
    .setForward(L1Forward, "cpu");

// ------------------------------------------------------------------ prune
static MXReturnValue PruneForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                  std::vector<MXTensor>* outputs, const OpResource& res) {
  float eps;
  if (GetFloat(attrs, "lcnn_lookup_prune", "eps", &eps) != MX_SUCCESS) return MX_FAIL;
  const float* p = (*inputs)[0].data<float>();
  uint8_t* a = (*inputs)[1].data<uint8_t>();  // mutated
  float* y = (*outputs)[0].data<float>();  // may be p itself (out=lookup)
  const int64_t n = Size((*inputs)[0]);
  PruneKernel(p, a, eps, n, y);
  return MX_SUCCESS;
}

static MXReturnValue PruneAttrs(const Attrs& attrs, int* num_in, int* num_out) {
  float eps;
  *num_in = 2, *num_out = 1;
  return GetFloat(attrs, "lcnn_lookup_prune", "eps", &eps);
}

static MXReturnValue PruneType(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  return CheckTypes("lcnn_lookup_prune", 1, in, out);
}

static MXReturnValue PruneShape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                                std::vector<std::vector<unsigned int>>* out) {
  return SameShapes("lcnn_lookup_prune (lookup, alive)", in, out);
}

static MXReturnValue PruneMutates(const Attrs& attrs, std::vector<int>* input_indices) {
  input_indices->push_back(1);  // alive
  return MX_SUCCESS;
}

REGISTER_OP(lcnn_lookup_prune)
    .setParseAttrs(PruneAttrs)
    .setInferType(PruneType)
    .setInferShape(PruneShape)
    .setMutateInputs(PruneMutates)
    .setForward(PruneForward, "cpu");

// ------------------------------------------------------------------ fused SGD step
static MXReturnValue GetSgdParams(const Attrs& attrs, SgdParams* p) {
  const char* op = "lcnn_lookup_sgd";
  if (GetFloat(attrs, op, "lr", &p->lr) != MX_SUCCESS || GetFloat(attrs, op, "wd", &p->wd) != MX_SUCCESS ||
      GetFloat(attrs, op, "momentum", &p->momentum) != MX_SUCCESS ||
      GetFloat(attrs, op, "rescale_grad", &p->rescale, true) != MX_SUCCESS ||
      GetFloat(attrs, op, "eps", &p->eps) != MX_SUCCESS || GetFloat(attrs, op, "l1", &p->l1) != MX_SUCCESS)
    return MX_FAIL;
  p->clip = -1.f;  // as MXNet's optimizers: clip_gradient <= 0 means no clipping
  if (attrs.count("clip_gradient") && GetFloat(attrs, op, "clip_gradient", &p->clip, true) != MX_SUCCESS)
    return MX_FAIL;
  return MX_SUCCESS;
}

// inputs: [0] lookup, [1] grad, [2] mom (mutated), [3] alive (mutated); outputs: [0] lookup
static MXReturnValue SgdForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                std::vector<MXTensor>* outputs, const OpResource& res) {
  SgdParams q;
  if (GetSgdParams(attrs, &q) != MX_SUCCESS) return MX_FAIL;
  const float *w = (*inputs)[0].data<float>(), *g = (*inputs)[1].data<float>();
  float* mom = (*inputs)[2].data<float>();
  uint8_t* a = (*inputs)[3].data<uint8_t>();
  float* y = (*outputs)[0].data<float>();  // may be w itself (out=lookup)
  const int64_t n = Size((*inputs)[0]);
  SgdKernel(q, w, g, mom, a, n, y);
  return MX_SUCCESS;
}

static MXReturnValue SgdAttrs(const Attrs& attrs, int* num_in, int* num_out) {
  SgdParams q;
  *num_in = 4, *num_out = 1;
  return GetSgdParams(attrs, &q);
}

static MXReturnValue SgdType(const Attrs& attrs, std::vector<int>* in, std::vector<int>* out) {
  return CheckTypes("lcnn_lookup_sgd", 3, in, out);
}

static MXReturnValue SgdShape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in,
                              std::vector<std::vector<unsigned int>>* out) {
  for (int i = 1; i < 4; ++i) {
    if ((*in)[i] != (*in)[0]) {
      MX_ERROR_MSG << "lcnn_lookup_sgd: lookup, grad, mom and alive must have the same shape";
      return MX_FAIL;
    }
  }
  (*out)[0] = (*in)[0];
  return MX_SUCCESS;
}

static MXReturnValue SgdMutates(const Attrs& attrs, std::vector<int>* input_indices) {
  input_indices->push_back(2);  // mom
  input_indices->push_back(3);  // alive
  return MX_SUCCESS;
}

REGISTER_OP(lcnn_lookup_sgd)
    .setParseAttrs(SgdAttrs)
    .setInferType(SgdType)
    .setInferShape(SgdShape)
    .setMutateInputs(SgdMutates)
    .setForward(SgdForward, "cpu");
