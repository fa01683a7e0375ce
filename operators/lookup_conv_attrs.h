// Attributes of lcnn_lookup_conv (see lookup_conv.cc): parsing and validation, and the output
// size rule. No vector instructions here: this header is compiled into the part of the
// library that runs before the CPU check (registration, initialize()).
#ifndef LCNN_LOOKUP_CONV_ATTRS_H_
#define LCNN_LOOKUP_CONV_ATTRS_H_

#include <algorithm>
#include <sstream>
#include <string>
#include <unordered_map>

#include "mxnet/lib_api.h"

using namespace mxnet::ext;  // NOLINT

// ------------------------------------------------------------------ attributes
struct Params {
  int kh, kw, sh, sw, ph, pw, num_filter;
  bool relu;
  bool residual = false;  // a 7th input added before act (a ResNet block's shortcut)
  int pool_kh = 0, pool_kw = 0, pool_sh = 1, pool_sw = 1, pool_ph = 0, pool_pw = 0;  // 0: no pooling
};

static inline bool ParsePair(const std::string& text, int* a, int* b) {
  std::string s;
  for (char ch : text) s += (ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == ',') ? ' ' : ch;
  std::istringstream in(s);
  if (!(in >> *a)) return false;
  if (!(in >> *b)) *b = *a;
  std::string rest;
  return !(in >> rest);
}

static inline MXReturnValue GetParams(const std::unordered_map<std::string, std::string>& attrs,
                                      Params* p) {
  static const char* known[] = {"kernel", "stride", "pad", "num_filter", "act", "pool_kernel",
                                "pool_stride", "pool_pad", "residual"};
  for (const auto& kv : attrs) {
    if (kv.first.rfind("__", 0) == 0) continue;  // MXNet's own annotations
    if (std::find_if(std::begin(known), std::end(known),
                     [&](const char* k) { return kv.first == k; }) == std::end(known)) {
      MX_ERROR_MSG << "lcnn_lookup_conv: unknown attribute '" << kv.first << "'";
      return MX_FAIL;
    }
  }
  auto get = [&](const char* key, const char* fallback) {
    auto it = attrs.find(key);
    return it == attrs.end() ? std::string(fallback) : it->second;
  };
  if (!attrs.count("kernel") || !attrs.count("num_filter")) {
    MX_ERROR_MSG << "lcnn_lookup_conv: attributes 'kernel' and 'num_filter' are required";
    return MX_FAIL;
  }
  if (!ParsePair(get("kernel", ""), &p->kh, &p->kw) || !ParsePair(get("stride", "1"), &p->sh, &p->sw) ||
      !ParsePair(get("pad", "0"), &p->ph, &p->pw)) {
    MX_ERROR_MSG << "lcnn_lookup_conv: kernel/stride/pad must be 'K' or '(K1, K2)'";
    return MX_FAIL;
  }
  std::istringstream nf(get("num_filter", ""));
  std::string extra;
  if (!(nf >> p->num_filter) || (nf >> extra) || p->num_filter < 1) {
    MX_ERROR_MSG << "lcnn_lookup_conv: num_filter must be a positive integer";
    return MX_FAIL;
  }
  std::string act = get("act", "none");
  if (act != "none" && act != "relu") {
    MX_ERROR_MSG << "lcnn_lookup_conv: act must be 'none' or 'relu', got '" << act << "'";
    return MX_FAIL;
  }
  p->relu = act == "relu";
  const std::string residual = get("residual", "0");
  if (residual != "0" && residual != "1" && residual != "False" && residual != "True") {
    MX_ERROR_MSG << "lcnn_lookup_conv: residual must be 0 or 1, got '" << residual << "'";
    return MX_FAIL;
  }
  p->residual = residual == "1" || residual == "True";
  if (p->residual && attrs.count("pool_kernel")) {
    MX_ERROR_MSG << "lcnn_lookup_conv: residual cannot be combined with pool_kernel";
    return MX_FAIL;
  }
  if (attrs.count("pool_kernel")) {
    if (!ParsePair(get("pool_kernel", ""), &p->pool_kh, &p->pool_kw) ||
        !ParsePair(get("pool_stride", "1"), &p->pool_sh, &p->pool_sw) ||
        !ParsePair(get("pool_pad", "0"), &p->pool_ph, &p->pool_pw) || p->pool_kh < 1 ||
        p->pool_kw < 1 || p->pool_sh < 1 || p->pool_sw < 1 || p->pool_ph < 0 || p->pool_pw < 0 ||
        p->pool_ph >= p->pool_kh || p->pool_pw >= p->pool_kw) {
      MX_ERROR_MSG << "lcnn_lookup_conv: pool_kernel/pool_stride must be >= 1 and pool_pad in [0, pool_kernel)";
      return MX_FAIL;
    }
  } else if (attrs.count("pool_stride") || attrs.count("pool_pad")) {
    MX_ERROR_MSG << "lcnn_lookup_conv: pool_stride/pool_pad given without pool_kernel";
    return MX_FAIL;
  }
  if (p->kh < 1 || p->kw < 1 || p->sh < 1 || p->sw < 1 || p->ph < 0 || p->pw < 0) {
    MX_ERROR_MSG << "lcnn_lookup_conv: kernel and stride must be >= 1, pad >= 0";
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// The operator's state (lookup_conv.cc), created for each node by the registration.
CustomStatefulOp* MakeLookupConv(const Params& p);

// Output size of a convolution or pooling window over n inputs (MXNet's 'valid' convention).
static inline int OutSize(int n, int kernel, int stride, int pad) { return (n + 2 * pad - kernel) / stride + 1; }

#endif  // LCNN_LOOKUP_CONV_ATTRS_H_
