// The data caches of one core that the operators' plans size their work by: what the CPU
// reports (glibc's sysconf), unless an environment variable sets it. Why the variables: a VM
// may report its host's caches wrongly, and the tests set them to cover the plans of other hosts.
#ifndef LCNN_CORE_CACHES_H_
#define LCNN_CORE_CACHES_H_

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "lookup_conv_attrs.h"  // (lib_api: MXReturnValue, MX_ERROR_MSG)

struct CoreCache {
  int sysconf_name;
  const char* env;  // sets the bytes instead
};
static const CoreCache kCoreL1 = {_SC_LEVEL1_DCACHE_SIZE, "LCNN_L1_BYTES"};
static const CoreCache kCoreL2 = {_SC_LEVEL2_CACHE_SIZE, "LCNN_L2_BYTES"};

// The cache's bytes (0: unknown), or an error from operator `op` naming the variable when it is
// set to something other than a byte count.
static inline MXReturnValue CoreCacheBytes(const CoreCache& cache, const char* op, int64_t* bytes) {
  const char* set = std::getenv(cache.env);
  if (!set) {
    *bytes = std::max<long>(0, sysconf(cache.sysconf_name));
    return MX_SUCCESS;
  }
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(set, &end, 10);
  if (end == set || *end != '\0' || value < 0 || errno == ERANGE) {
    MX_ERROR_MSG << op << ": " << cache.env << "='" << set << "' is not a number of bytes (a non-negative integer)";
    return MX_FAIL;
  }
  *bytes = value;
  return MX_SUCCESS;
}

#endif  // LCNN_CORE_CACHES_H_
