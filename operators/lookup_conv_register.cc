// Registration of lcnn_lookup_conv (see lookup_conv.cc): attributes, input types and shapes
// (every error an MX_FAIL with a message, never a crash) and the operator state, made by the
// kernels library_init.cc chose when the library loaded.
#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "lookup_conv_attrs.h"
#include "parsed_attrs.h"

// ------------------------------------------------------------------ registration
static MXReturnValue Counts(const std::unordered_map<std::string, std::string>& attrs, int* num_in, int* num_out) {
  Params p;
  if (GetParams(attrs, &p) != MX_SUCCESS) return MX_FAIL;
  *num_in = p.residual ? 7 : 6;
  *num_out = 1;
  return MX_SUCCESS;
}

static MXReturnValue ParseAttrs(const std::unordered_map<std::string, std::string>& attrs,
                                int* num_in, int* num_out) {
  return ParseOnce(attrs, num_in, num_out, Counts);
}

MXReturnValue LookupConvInferType(const std::unordered_map<std::string, std::string>& attrs,
                                  std::vector<int>* in, std::vector<int>* out) {
  static const int want[] = {kFloat32, kFloat32, kInt32, kInt32, kFloat32, kFloat32, kFloat32};
  for (size_t i = 0; i < in->size(); ++i) {
    if ((*in)[i] != want[i]) {
      MX_ERROR_MSG << "lcnn_lookup_conv: input '" << kInputNames[i] << "' must be "
                   << (want[i] == kFloat32 ? "float32" : "int32") << ", got dtype code " << (*in)[i];
      return MX_FAIL;
    }
  }
  (*out)[0] = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue LookupConvInferShape(const std::unordered_map<std::string, std::string>& attrs,
                                   std::vector<std::vector<unsigned int>>* in,
                                   std::vector<std::vector<unsigned int>>* out) {
  Params p;
  if (GetParams(attrs, &p) != MX_SUCCESS) return MX_FAIL;
  const auto &x = (*in)[kData], &d = (*in)[kDictionary], &ptr = (*in)[kIndptr], &idx = (*in)[kIndices],
             &coef = (*in)[kCoefs], &bias = (*in)[kBias];
  if (x.size() != 4) {
    MX_ERROR_MSG << "lcnn_lookup_conv: data must be 4-D (N, C, H, W), got " << x.size() << "-D";
    return MX_FAIL;
  }
  const bool dict_ok = d.size() == 2 || (d.size() == 4 && d[2] == 1 && d[3] == 1);
  const int m_axis = p.transposed_dictionary ? 0 : 1;  // (m, k) or (k, m)
  if (!dict_ok || d[m_axis] != x[1]) {
    MX_ERROR_MSG << "lcnn_lookup_conv: dictionary must be " << (m_axis ? "(k, m)" : "(m, k), dictionary_layout 'mk',")
                 << " with m = data channels (" << x[1] << ")"
                 << (dict_ok ? ", got m = " + std::to_string(d[m_axis]) : ", got another rank");
    return MX_FAIL;
  }
  if (p.transposed_dictionary && (x[2] != 1 || x[3] != 1)) {
    MX_ERROR_MSG << "lcnn_lookup_conv: dictionary_layout 'mk' needs an input of 1x1 (a fully connected layer), got "
                 << x[2] << "x" << x[3];
    return MX_FAIL;
  }
  if (ptr.size() != 1 || ptr[0] != static_cast<unsigned>(p.num_filter) + 1) {
    MX_ERROR_MSG << "lcnn_lookup_conv: indptr must have num_filter + 1 = " << p.num_filter + 1
                 << " entries";
    return MX_FAIL;
  }
  if (idx.size() != 1 || coef.size() != 1 || idx[0] != coef[0]) {
    MX_ERROR_MSG << "lcnn_lookup_conv: indices and coefs must be 1-D of the same length";
    return MX_FAIL;
  }
  if (bias.size() != 1 || bias[0] != static_cast<unsigned>(p.num_filter)) {
    MX_ERROR_MSG << "lcnn_lookup_conv: bias must have num_filter = " << p.num_filter << " entries";
    return MX_FAIL;
  }
  Geometry g;
  if (MakeGeometry(p, x[1], x[2], x[3], d[1 - m_axis], &g) != MX_SUCCESS) return MX_FAIL;
  (*out)[0] = {x[0], static_cast<unsigned>(p.num_filter), static_cast<unsigned>(g.yo),
               static_cast<unsigned>(g.xo)};
  if (p.residual && (*in)[kResidual] != (*out)[0]) {
    MX_ERROR_MSG << "lcnn_lookup_conv: residual must have the output's shape (" << x[0] << ", "
                 << p.num_filter << ", " << g.yo << ", " << g.xo << ")";
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

static MXReturnValue CreateState(const std::unordered_map<std::string, std::string>& attrs,
                                 const MXContext& ctx, const std::vector<std::vector<unsigned int>>& in,
                                 const std::vector<int> types, CustomStatefulOp** op) {
  Params p;
  if (GetParams(attrs, &p) != MX_SUCCESS) return MX_FAIL;
  *op = MakeChosenLookupConv(p);
  return MX_SUCCESS;
}

REGISTER_OP(lcnn_lookup_conv)
    .setParseAttrs(ParseAttrs)
    .setInferType(LookupConvInferType)
    .setInferShape(LookupConvInferShape)
    .setCreateOpState(CreateState, "cpu");
