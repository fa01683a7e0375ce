// The library's initialize(), called by MXNet when it loads the library and before any
// operator runs: it checks the MXNet version and the CPU, and chooses the kernels of
// lcnn_lookup_conv (one object per instruction set of lookup_conv_isa.h, all linked in).
//
//   LCNN_ISA unset     the widest set this CPU has: avx512, else avx2
//   LCNN_ISA=avx2      the AVX2 kernels even where the CPU has AVX-512
//   LCNN_ISA=avx512    the AVX-512 kernels; an error at load if the CPU lacks them
//   LCNN_ISA=avx2pair  the 16-lane kernels on pairs of AVX2 registers (tests of the 16-lane
//                      logic on hosts without AVX-512)
//
// This file and lib_api.cc are compiled without vector flags, so the checks themselves cannot
// fault on an older CPU: a CPU without AVX2 and FMA gets an error, never SIGILL.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include "lookup_conv_attrs.h"

#ifndef LCNN_MXNET_VERSION
#error "build with -DLCNN_MXNET_VERSION=<mxnet version as an integer, e.g. 10901>"
#endif
#if !defined(LCNN_CPU_FEATURES) || !defined(LCNN_AVX512_FEATURES)
#error "build with -DLCNN_CPU_FEATURES='\"avx2 fma\"' -DLCNN_AVX512_FEATURES='\"...\"' (the Makefile's lists)"
#endif

static const char* const kIsaEnv = "LCNN_ISA";

// Whether the CPU has `feature` (a name of /proc/cpuinfo's flags). LCNN_CPU_FLAGS, when set,
// lists the flags to admit (space- or comma-separated): tests use it to act as a CPU without
// a feature. It can only take features away: a wider path than the CPU has would fault.
static bool CpuHas(const std::string& feature) {
  __builtin_cpu_init();
  bool has = false;
  if (feature == "avx2") has = __builtin_cpu_supports("avx2");
  if (feature == "fma") has = __builtin_cpu_supports("fma");
  if (feature == "avx512f") has = __builtin_cpu_supports("avx512f");  // includes the OS's zmm state
  if (const char* forced = std::getenv("LCNN_CPU_FLAGS")) {
    std::string flags(forced);
    std::replace(flags.begin(), flags.end(), ',', ' ');
    std::istringstream words(flags);
    bool listed = false;
    for (std::string word; words >> word;) listed = listed || word == feature;
    has = has && listed;
  }
  return has;
}

// The features of the space-separated list `needed` the CPU lacks, comma-separated.
static std::string Missing(const char* needed) {
  std::istringstream words(needed);
  std::string missing;
  for (std::string feature; words >> feature;)
    if (!CpuHas(feature)) missing += (missing.empty() ? "" : ", ") + feature;
  return missing;
}

struct KernelSet {
  const char* name;      // as LCNN_ISA takes it and lcnn_kernel_isa() reports it
  const char* features;  // what the CPU needs for it
  bool by_default;       // chosen without LCNN_ISA when the CPU has it (widest first)
  LookupConvState* (*make)(const Params&);
};
static const KernelSet kKernelSets[] = {
    {"avx512", LCNN_AVX512_FEATURES, true, MakeLookupConv<Avx512>},
    {"avx2", LCNN_CPU_FEATURES, true, MakeLookupConv<Avx2>},
    {"avx2pair", LCNN_CPU_FEATURES, false, MakeLookupConv<Avx2Pair>},
};
static const KernelSet* chosen = nullptr;

LookupConvState* MakeChosenLookupConv(const Params& p) { return chosen->make(p); }

// The name of the kernels chosen at load ("" before): read by lcnn_gluon.ops.kernel_isa().
extern "C" const char* lcnn_kernel_isa() { return chosen ? chosen->name : ""; }

// any, on aligned rows, with class tiles, in row blocks, pooled in registers, with the product
// transposed, with identity lookups, split by depth, with halved class tiles
// (lcnn_gluon.ops.PLAN_KINDS)
static const int kPlanKinds = 9;
static std::atomic<int64_t> plans_built[kPlanKinds] = {};
void NotePlanBuilt(bool aligned_rows, bool class_tiles, bool row_blocks, bool pooled_rows, bool transposed_product,
                   bool identity_lookups, bool split_depth, bool halved_class_tiles) {
  ++plans_built[0];
  if (aligned_rows) ++plans_built[1];
  if (class_tiles) ++plans_built[2];
  if (row_blocks) ++plans_built[3];
  if (pooled_rows) ++plans_built[4];
  if (transposed_product) ++plans_built[5];
  if (identity_lookups) ++plans_built[6];
  if (split_depth) ++plans_built[7];
  if (halved_class_tiles) ++plans_built[8];
}

// How many times an operator state built a plan in this process (kind 0; tests check that
// states reuse them: lookup_conv.cc's PreparedPool), how many of them on S rows aligned to
// registers (kind 1), with class tiles (kind 2; lookup_conv_plan.h's AlignmentFor), in
// several row blocks (kind 3; PlanRowBlocks: tile-major, or fully connected over a batch), with
// the pooling taken in registers (kind 4; PooledRowsFit), with the dictionary product
// transposed (kind 5; Plan::transposed_product), with identity lookups (kind 6;
// Plan::identity_lookups), with the product split by depth (kind 7; Plan::split_depth) and
// with class tiles of half the registers (kind 8; kClassBlockSpanBytes).
extern "C" int64_t lcnn_plans_built(int kind) { return kind >= 0 && kind < kPlanKinds ? plans_built[kind].load() : -1; }

static MXReturnValue ChooseKernels() {
  const char* forced = std::getenv(kIsaEnv);
  std::string names;
  for (const KernelSet& set : kKernelSets) {
    names += std::string(names.empty() ? "" : ", ") + set.name;
    if (forced && *forced ? std::string(forced) != set.name : !set.by_default) continue;
    const std::string missing = Missing(set.features);
    if (missing.empty()) {
      chosen = &set;
      return MX_SUCCESS;
    }
    if (forced && *forced) {
      MX_ERROR_MSG << "liblcnn_ops: " << kIsaEnv << "=" << forced << " needs a CPU with " << set.features
                   << "; this CPU lacks " << missing << " (unset " << kIsaEnv << " to use the widest it has)";
      return MX_FAIL;
    }
  }
  MX_ERROR_MSG << "liblcnn_ops: " << kIsaEnv << "=" << (forced ? forced : "") << " is not a kernel set; use one of "
               << names;
  return MX_FAIL;
}

MXReturnValue initialize(int version) {
  if (version != LCNN_MXNET_VERSION) {
    MX_ERROR_MSG << "liblcnn_ops was built for MXNet " << LCNN_MXNET_VERSION << ", this is MXNet "
                 << version << ": rebuild it (make -C operators)";
    return MX_FAIL;
  }
  const std::string missing = Missing(LCNN_CPU_FEATURES);
  if (!missing.empty()) {
    MX_ERROR_MSG << "liblcnn_ops needs a CPU with " << LCNN_CPU_FEATURES << "; this CPU lacks " << missing;
    return MX_FAIL;
  }
  return ChooseKernels();
}
