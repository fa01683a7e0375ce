// Registration of lcnn_lookup_conv (see lookup_conv.cc): attributes, input types and shapes
// (every error an MX_FAIL with a message, never a crash), the operator state; and the
// library's initialize(), which checks the MXNet version and the CPU.
#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "lookup_conv_attrs.h"

// ------------------------------------------------------------------ registration
static MXReturnValue ParseAttrs(const std::unordered_map<std::string, std::string>& attrs,
                                int* num_in, int* num_out) {
  Params p;
  if (GetParams(attrs, &p) != MX_SUCCESS) return MX_FAIL;
  *num_in = p.residual ? 7 : 6;
  *num_out = 1;
  return MX_SUCCESS;
}

static MXReturnValue InferType(const std::unordered_map<std::string, std::string>& attrs,
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

static MXReturnValue InferShape(const std::unordered_map<std::string, std::string>& attrs,
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
  if (!dict_ok || d[1] != x[1]) {
    MX_ERROR_MSG << "lcnn_lookup_conv: dictionary must be (k, m) with m = data channels (" << x[1]
                 << ")" << (dict_ok ? ", got m = " + std::to_string(d[1]) : ", got another rank");
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
  if (MakeGeometry(p, x[1], x[2], x[3], d[0], &g) != MX_SUCCESS) return MX_FAIL;
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
  *op = MakeLookupConv(p);
  return MX_SUCCESS;
}

REGISTER_OP(lcnn_lookup_conv)
    .setParseAttrs(ParseAttrs)
    .setInferType(InferType)
    .setInferShape(InferShape)
    .setCreateOpState(CreateState, "cpu");

#ifndef LCNN_MXNET_VERSION
#error "build with -DLCNN_MXNET_VERSION=<mxnet version as an integer, e.g. 10901>"
#endif
#ifndef LCNN_CPU_FEATURES
#error "build with -DLCNN_CPU_FEATURES='\"avx2 fma\"' (the Makefile's CPU_FEATURES)"
#endif

// Whether the CPU has `feature` (a name of /proc/cpuinfo's flags). LCNN_CPU_FLAGS, when set,
// replaces what the CPU reports (space- or comma-separated), so tests can force a CPU without.
static bool CpuHas(const std::string& feature) {
  if (const char* forced = std::getenv("LCNN_CPU_FLAGS")) {
    std::string flags(forced);
    std::replace(flags.begin(), flags.end(), ',', ' ');
    std::istringstream words(flags);
    for (std::string word; words >> word;)
      if (word == feature) return true;
    return false;
  }
  __builtin_cpu_init();
  if (feature == "avx2") return __builtin_cpu_supports("avx2");
  if (feature == "fma") return __builtin_cpu_supports("fma");
  if (feature == "avx512f") return __builtin_cpu_supports("avx512f");
  return false;
}

// Called by MXNet when the library loads, before any operator runs. This file and lib_api.cc
// are compiled without -mavx2/-mfma, so the check itself cannot fault on an older CPU.
MXReturnValue initialize(int version) {
  if (version != LCNN_MXNET_VERSION) {
    MX_ERROR_MSG << "liblcnn_ops was built for MXNet " << LCNN_MXNET_VERSION << ", this is MXNet "
                 << version << ": rebuild it (make -C operators)";
    return MX_FAIL;
  }
  std::istringstream needed(LCNN_CPU_FEATURES);
  std::string missing;
  for (std::string feature; needed >> feature;)
    if (!CpuHas(feature)) missing += (missing.empty() ? "" : ", ") + feature;
  if (!missing.empty()) {
    MX_ERROR_MSG << "liblcnn_ops needs a CPU with " << LCNN_CPU_FEATURES << "; this CPU lacks "
                 << missing;
    return MX_FAIL;
  }
  return MX_SUCCESS;
}
