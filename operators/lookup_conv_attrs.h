// Attributes of lcnn_lookup_conv (see lookup_conv.cc): parsing and validation, and the sizes
// derived from them and an input shape (Geometry), each checked in 64-bit arithmetic against
// the bounds the kernels' 32-bit offsets allow. No vector instructions here: this header is
// compiled into the part of the library that runs before the CPU check (registration).
#ifndef LCNN_LOOKUP_CONV_ATTRS_H_
#define LCNN_LOOKUP_CONV_ATTRS_H_

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "lookup_conv_format.h"
#include "mxnet/lib_api.h"

using namespace mxnet::ext;  // NOLINT

// ------------------------------------------------------------------ bounds
// kernel, stride, pad and the pool_* attributes: far above any network's, and small enough
// that sums and products of a few of them stay far from 64-bit overflow.
static const int kMaxWindow = 1 << 16;
static const int kMaxFilters = 1 << 24;
// The kernels address one image's planes with 32-bit offsets: every per-image size stays below.
static const int64_t kMaxElements = (int64_t{1} << 31) - 1;
// Below this many outputs per channel (fully connected layers) the kernels gather entries one
// output at a time; from it on they accumulate 64-float register tiles, which may read up to a
// row past the end of a phase plane (one spare row is allocated).
static const int kFewOutputs = 16;

// ------------------------------------------------------------------ attributes
struct Params {
  int kh, kw, sh, sw, ph, pw, num_filter;
  bool relu;
  bool residual = false;  // a 7th input added before act (a ResNet block's shortcut)
  // dictionary_layout "mk": D is given transposed, (m, k), and the layer is fully connected
  bool transposed_dictionary = false;
  int pool_kh = 0, pool_kw = 0, pool_sh = 1, pool_sw = 1, pool_ph = 0, pool_pw = 0;  // 0: no pooling
};

// "K", "(K1, K2)" or "[K1, K2]" as two ints; false for anything else (other tokens, more than
// two numbers, values outside int).
static inline bool ParsePair(const std::string& text, int* a, int* b) {
  std::string s;
  for (char ch : text) s += (ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == ',') ? ' ' : ch;
  std::istringstream in(s);
  std::vector<long long> values;
  for (std::string token; in >> token;) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(token, &used);
    } catch (const std::exception&) {
      return false;
    }
    if (used != token.size() || v < INT32_MIN || v > INT32_MAX) return false;
    values.push_back(v);
  }
  if (values.empty() || values.size() > 2) return false;
  *a = static_cast<int>(values[0]);
  *b = static_cast<int>(values.back());
  return true;
}

static inline MXReturnValue GetParams(const std::unordered_map<std::string, std::string>& attrs,
                                      Params* p) {
  for (const auto& kv : attrs) {
    if (kv.first.rfind("__", 0) == 0) continue;  // MXNet's own annotations
    if (std::find_if(std::begin(kAttributeNames), std::end(kAttributeNames),
                     [&](const char* k) { return kv.first == k; }) == std::end(kAttributeNames)) {
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
  for (int v : {p->kh, p->kw, p->sh, p->sw, p->pool_sh, p->pool_sw}) {
    if (v < 1 || v > kMaxWindow) {
      MX_ERROR_MSG << "lcnn_lookup_conv: kernel, stride and pool_stride must be in [1, " << kMaxWindow
                   << "], got " << v;
      return MX_FAIL;
    }
  }
  for (int v : {p->ph, p->pw, p->pool_kh, p->pool_kw, p->pool_ph, p->pool_pw}) {
    if (v < 0 || v > kMaxWindow) {
      MX_ERROR_MSG << "lcnn_lookup_conv: pad, pool_kernel and pool_pad must be in [0, " << kMaxWindow
                   << "], got " << v;
      return MX_FAIL;
    }
  }
  if (p->num_filter > kMaxFilters) {
    MX_ERROR_MSG << "lcnn_lookup_conv: num_filter " << p->num_filter << " is above " << kMaxFilters;
    return MX_FAIL;
  }
  const std::string layout = get("dictionary_layout", "km");
  if (layout != "km" && layout != "mk") {
    MX_ERROR_MSG << "lcnn_lookup_conv: dictionary_layout must be 'km' or 'mk', got '" << layout << "'";
    return MX_FAIL;
  }
  p->transposed_dictionary = layout == "mk";
  if (p->transposed_dictionary &&
      (p->kh != 1 || p->kw != 1 || p->sh != 1 || p->sw != 1 || p->ph || p->pw || p->pool_kh || p->residual)) {
    MX_ERROR_MSG << "lcnn_lookup_conv: dictionary_layout 'mk' is for fully connected layers only: kernel 1, "
                 << "stride 1, pad 0, no pooling or residual";
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// Output size of a convolution or pooling window over n inputs (MXNet's 'valid' convention).
static inline int64_t OutSize(int64_t n, int64_t kernel, int64_t stride, int64_t pad) {
  return (n + 2 * pad - kernel) / stride + 1;
}

// Stride phases a kernel reaches along one axis: taps 0 .. kernel-1 fall in phases tap % stride,
// so a kernel narrower than its stride (a 1x1 stride-2 shortcut) never reads the others.
static inline int ReachedPhases(int kernel, int stride) { return std::min(kernel, stride); }

// ------------------------------------------------------------------ geometry
// The sizes of one image's computation, for attributes p and an input (m, h, w) with a
// dictionary of k entries. The padded input is split into sh x sw stride phases of hq x wq;
// S holds, per dictionary entry, all phases (cols floats, 8-aligned); an output channel is
// accumulated over ho rows of wq ("extended" rows: the last wq - wo columns are discarded).
struct Geometry {
  int64_t m = -1, h = -1, w = -1, k = -1;
  int64_t hp = 0, wp = 0;  // padded input
  int64_t ho = 0, wo = 0;  // convolution output
  int64_t yo = 0, xo = 0;  // after the fused pooling (ho, wo without)
  int64_t hq = 0, wq = 0;  // one stride phase
  int64_t ext = 0;         // ho * wq
  int64_t plane = 0;       // one phase plane, with a spare row for register tiles
  int64_t cols = 0;        // all phases of one S row
};

// Registers of `lanes` floats one output row (wo floats) takes: row tiles' and pooled rows'.
static inline int64_t OutputRowRegisters(const Geometry& g, int lanes) { return (g.wo + lanes - 1) / lanes; }

// visit(e) for each position e of the extended plane that holds an output (the first wo of each
// extended row), in order; no division per position (a 64-bit modulo per output channel of a
// fully connected layer, 4096 of them, showed in its profile).
template <class Visit>
static inline void ForEachOutput(const Geometry& g, const Visit& visit) {
  for (int64_t row = 0; row < g.ext; row += g.wq)
    for (int64_t e = row; e < row + g.wo; ++e) visit(e);
}

// `row_align`: a phase row's floats (wq) rounded up to a multiple of it, so that every row of S
// starts on a register boundary (class tiles, lookup_conv_plan.h); 1 for the narrowest rows.
static inline MXReturnValue MakeGeometry(const Params& p, int64_t m, int64_t h, int64_t w, int64_t k,
                                         Geometry* g, int64_t row_align = 1) {
  if (m < 1 || h < 1 || w < 1 || k < 1 || m > kMaxElements || h > kMaxElements || w > kMaxElements ||
      k > kMaxElements) {
    MX_ERROR_MSG << "lcnn_lookup_conv: channels, height, width and dictionary size must be in [1, "
                 << kMaxElements << "], got " << m << ", " << h << ", " << w << ", " << k;
    return MX_FAIL;
  }
  g->m = m, g->h = h, g->w = w, g->k = k;
  g->hp = h + 2 * p.ph, g->wp = w + 2 * p.pw;
  if (g->hp < p.kh || g->wp < p.kw) {
    MX_ERROR_MSG << "lcnn_lookup_conv: kernel " << p.kh << "x" << p.kw << " is larger than the "
                 << "padded input " << g->hp << "x" << g->wp;
    return MX_FAIL;
  }
  g->ho = OutSize(h, p.kh, p.sh, p.ph), g->wo = OutSize(w, p.kw, p.sw, p.pw);
  g->yo = g->ho, g->xo = g->wo;
  if (p.pool_kh) {
    if (g->ho + 2 * p.pool_ph < p.pool_kh || g->wo + 2 * p.pool_pw < p.pool_kw) {
      MX_ERROR_MSG << "lcnn_lookup_conv: pool_kernel is larger than the " << g->ho << "x" << g->wo
                   << " output";
      return MX_FAIL;
    }
    g->yo = OutSize(g->ho, p.pool_kh, p.pool_sh, p.pool_ph);
    g->xo = OutSize(g->wo, p.pool_kw, p.pool_sw, p.pool_pw);
  }
  g->hq = (g->hp + p.sh - 1) / p.sh, g->wq = (g->wp + p.sw - 1) / p.sw;
  g->wq = (g->wq + row_align - 1) / row_align * row_align;
  g->ext = g->ho * g->wq;
  g->plane = (g->hq + (g->ext >= kFewOutputs ? 1 : 0)) * g->wq;
  g->cols = static_cast<int64_t>(p.sh) * p.sw * g->plane;
  if (g->cols > 1) g->cols = (g->cols + 7) / 8 * 8;  // whole 8-float strips for the GEMM
  // per image: S (k x cols) and the split input (m x cols) hold the largest offsets; an output
  // plane (ext <= cols, rounded up to whole tiles) is smaller
  const int64_t widest = std::max(m, k);
  if (g->cols > (kMaxElements - 64) / widest) {
    MX_ERROR_MSG << "lcnn_lookup_conv: input " << m << "x" << h << "x" << w << " with kernel " << p.kh
                 << "x" << p.kw << ", stride " << p.sh << "x" << p.sw << ", pad " << p.ph << "x" << p.pw
                 << " needs planes of more than " << kMaxElements << " floats per image";
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// The operator's state (lookup_conv.cc), one factory per instruction set of lookup_conv_isa.h;
// the registration calls the one library_init.cc chose when the library loaded.
class LookupConvState : public CustomStatefulOp {
 public:
  // The next Forward runs on the packed content of the last one, which succeeded: the same
  // tensors, unwritten since (lookup_chain.cc, a layer's later groups of images in one call).
  // It does not compare that content again.
  void SameContentNext() { same_content_next_ = true; }

 protected:
  bool same_content_next_ = false;
};
struct Avx2;
struct Avx512;
struct Avx2Pair;
template <class I>
LookupConvState* MakeLookupConv(const Params& p);
LookupConvState* MakeChosenLookupConv(const Params& p);
// lcnn_lookup_conv's input types and shapes (lookup_conv_register.cc), checked; also each
// layer's in lcnn_lookup_chain (lookup_chain.cc).
MXReturnValue LookupConvInferType(const std::unordered_map<std::string, std::string>& attrs, std::vector<int>* in,
                                  std::vector<int>* out);
MXReturnValue LookupConvInferShape(const std::unordered_map<std::string, std::string>& attrs,
                                   std::vector<std::vector<unsigned int>>* in,
                                   std::vector<std::vector<unsigned int>>* out);
// Counts the plans built in this process, and those of each kind flagged (library_init.cc;
// lcnn_plans_built() reads them).
void NotePlanBuilt(bool aligned_rows, bool class_tiles, bool row_blocks, bool pooled_rows, bool transposed_product,
                   bool identity_lookups, bool split_depth, bool halved_class_tiles);

#endif  // LCNN_LOOKUP_CONV_ATTRS_H_
