// The parseAttrs of lcnn_lookup_conv and lcnn_lookup_chain, each attribute set parsed once.
// MXNet calls an operator's parseAttrs on every forward pass of a static CachedOp
// (CachedOp::StaticRunOps), not only while it builds the graph: parsing and checking every
// field of ResNet-18-fast's chains took 2.9-3.0% of its batch-1 call at one and at two threads
// (perf samples, run 40); with the sets kept, building the key that finds them takes 0.9%. A
// set that parsed without error is kept with its counts; one with an error is parsed again,
// so that every call reports it.
#ifndef LCNN_PARSED_ATTRS_H_
#define LCNN_PARSED_ATTRS_H_

#include <string>
#include <unordered_map>
#include <utility>

#include "mxnet/lib_api.h"

// Attribute sets kept per thread (MXNet may run graphs on several threads; no lock): far more
// than the operators of any network, and a bound on what a long session keeps.
static const size_t kMaxParsedAttrSets = 4096;

// *num_in, *num_out of `attrs` as parse(attrs, num_in, num_out) gives them, from the kept
// result when this thread parsed the same set before.
template <class Parse>
static inline mxnet::ext::MXReturnValue ParseOnce(const std::unordered_map<std::string, std::string>& attrs,
                                                  int* num_in, int* num_out, Parse parse) {
  std::string key;  // every name and value, each after its length: two sets share a key only if equal
  for (const auto& kv : attrs)
    for (const std::string* s : {&kv.first, &kv.second})
      key.append(std::to_string(s->size())).append(1, ':').append(*s);
  thread_local std::unordered_map<std::string, std::pair<int, int>> parsed;
  const auto it = parsed.find(key);
  if (it != parsed.end()) {
    *num_in = it->second.first, *num_out = it->second.second;
    return mxnet::ext::MX_SUCCESS;
  }
  if (parse(attrs, num_in, num_out) != mxnet::ext::MX_SUCCESS) return mxnet::ext::MX_FAIL;
  if (parsed.size() < kMaxParsedAttrSets) parsed.emplace(std::move(key), std::make_pair(*num_in, *num_out));
  return mxnet::ext::MX_SUCCESS;
}

#endif  // LCNN_PARSED_ATTRS_H_
