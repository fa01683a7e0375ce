// The attributes, inputs and outputs of lcnn_lookup_chain (lookup_chain.cc), as lcnn_gluon/chain.py
// writes them into an export:
//
//   num_layers        "L"
//   l<i>_<attr>       layer i's attributes of lcnn_lookup_conv (kernel, stride, pad, ...)
//   l<i>_data         where layer i's input comes from: -1 the chain's data, j a layer j < i
//   l<i>_shortcut     the same for its residual (only with l<i>_residual = 1)
//   outputs           "j,k,...": the layers whose outputs are the chain's outputs, in order
//   inputs            data, then layer i's dictionary, indptr, indices, coefs and bias
//                     (inputs 1 + 5i .. 5 + 5i), as in lcnn_lookup_conv
//
// ParseChain reads and checks them; the shape and type inference run lcnn_lookup_conv's for each
// layer in turn. Only lookup_chain.cc includes this header.
#ifndef LCNN_LOOKUP_CHAIN_ATTRS_H_
#define LCNN_LOOKUP_CHAIN_ATTRS_H_

#include <algorithm>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "lookup_conv_attrs.h"
#include "parsed_attrs.h"

// A layer's weights among the chain's inputs: lcnn_lookup_conv's inputs after data, before residual.
static const int kLayerWeights = kResidual - 1;

struct Layer {
  std::unordered_map<std::string, std::string> attrs;  // lcnn_lookup_conv's
  Params params;
  int data = -1, shortcut = -1;  // sources: -1 the chain's data, j layer j
};

struct Chain {
  std::vector<Layer> layers;
  std::vector<int> outputs;  // layer per chain output
};

static inline bool ParseInt(const std::string& text, int* v) {
  std::istringstream in(text);
  std::string extra;
  return static_cast<bool>(in >> *v) && !(in >> extra);
}

// The chain described by `attrs`, every field checked.
static inline MXReturnValue ParseChain(const std::unordered_map<std::string, std::string>& attrs, Chain* chain) {
  const auto get = [&](const std::string& key) {
    auto it = attrs.find(key);
    return it == attrs.end() ? std::string() : it->second;
  };
  int n = 0;
  if (!ParseInt(get("num_layers"), &n) || n < 1 || n > (1 << 16)) {
    MX_ERROR_MSG << "lcnn_lookup_chain: num_layers must be a positive integer, got '" << get("num_layers") << "'";
    return MX_FAIL;
  }
  chain->layers.assign(n, Layer());
  for (const auto& kv : attrs) {
    if (kv.first.rfind("__", 0) == 0 || kv.first == "num_layers" || kv.first == "outputs") continue;
    const size_t cut = kv.first.find('_');
    int i = -1;
    if (kv.first[0] != 'l' || cut == std::string::npos || !ParseInt(kv.first.substr(1, cut - 1), &i) || i < 0 ||
        i >= n) {
      MX_ERROR_MSG << "lcnn_lookup_chain: unknown attribute '" << kv.first << "'";
      return MX_FAIL;
    }
    const std::string field = kv.first.substr(cut + 1);
    if (field == "data" || field == "shortcut") {
      int src = 0;
      if (!ParseInt(kv.second, &src) || src < -1 || src >= i) {
        MX_ERROR_MSG << "lcnn_lookup_chain: " << kv.first << " must be -1 or a layer before " << i << ", got '"
                     << kv.second << "'";
        return MX_FAIL;
      }
      (field == "data" ? chain->layers[i].data : chain->layers[i].shortcut) = src;
    } else {
      chain->layers[i].attrs[field] = kv.second;
    }
  }
  for (Layer& layer : chain->layers)
    if (GetParams(layer.attrs, &layer.params) != MX_SUCCESS) return MX_FAIL;
  std::istringstream outs(get("outputs"));
  for (std::string item; std::getline(outs, item, ',');) {
    int j = 0;
    if (!ParseInt(item, &j) || j < 0 || j >= n) {
      MX_ERROR_MSG << "lcnn_lookup_chain: outputs must list layers in [0, " << n << "), got '" << get("outputs") << "'";
      return MX_FAIL;
    }
    chain->outputs.push_back(j);
  }
  if (chain->outputs.empty()) {
    MX_ERROR_MSG << "lcnn_lookup_chain: outputs must list at least one layer";
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// Layer i's inputs in lcnn_lookup_conv's order, from the chain's inputs and the layers' outputs.
template <class T>
static inline std::vector<T> LayerInputs(const Chain& chain, int i, const std::vector<T>& chain_inputs, const std::vector<T>& outs) {
  const Layer& layer = chain.layers[i];
  const auto source = [&](int src) { return src < 0 ? chain_inputs[0] : outs[src]; };
  std::vector<T> in{source(layer.data)};
  for (int w = 0; w < kLayerWeights; ++w) in.push_back(chain_inputs[1 + kLayerWeights * i + w]);
  if (layer.params.residual) in.push_back(source(layer.shortcut));
  return in;
}

static inline MXReturnValue Counts(const std::unordered_map<std::string, std::string>& attrs, int* num_in, int* num_out) {
  Chain chain;
  if (ParseChain(attrs, &chain) != MX_SUCCESS) return MX_FAIL;
  *num_in = 1 + kLayerWeights * static_cast<int>(chain.layers.size());
  *num_out = static_cast<int>(chain.outputs.size());
  return MX_SUCCESS;
}

static inline MXReturnValue ParseAttrs(const std::unordered_map<std::string, std::string>& attrs, int* num_in, int* num_out) {
  return ParseOnce(attrs, num_in, num_out, Counts);
}

static inline MXReturnValue InferType(const std::unordered_map<std::string, std::string>& attrs, std::vector<int>* in,
                        std::vector<int>* out) {
  Chain chain;
  if (ParseChain(attrs, &chain) != MX_SUCCESS) return MX_FAIL;
  const std::vector<int> floats(chain.layers.size(), kFloat32);
  for (size_t i = 0; i < chain.layers.size(); ++i) {
    std::vector<int> layer_in = LayerInputs(chain, static_cast<int>(i), *in, floats), layer_out(1);
    if (LookupConvInferType(chain.layers[i].attrs, &layer_in, &layer_out) != MX_SUCCESS) return MX_FAIL;
  }
  std::fill(out->begin(), out->end(), kFloat32);
  return MX_SUCCESS;
}

// Every layer's output shape, in order.
static inline MXReturnValue LayerShapes(const Chain& chain, const std::vector<std::vector<unsigned int>>& in,
                          std::vector<std::vector<unsigned int>>* shapes) {
  shapes->clear();
  for (size_t i = 0; i < chain.layers.size(); ++i) {
    std::vector<std::vector<unsigned int>> layer_in = LayerInputs(chain, static_cast<int>(i), in, *shapes), out(1);
    if (LookupConvInferShape(chain.layers[i].attrs, &layer_in, &out) != MX_SUCCESS) return MX_FAIL;
    shapes->push_back(out[0]);
  }
  return MX_SUCCESS;
}

static inline MXReturnValue InferShape(const std::unordered_map<std::string, std::string>& attrs,
                                       std::vector<std::vector<unsigned int>>* in, std::vector<std::vector<unsigned int>>* out) {
  Chain chain;
  std::vector<std::vector<unsigned int>> shapes;
  if (ParseChain(attrs, &chain) != MX_SUCCESS || LayerShapes(chain, *in, &shapes) != MX_SUCCESS) return MX_FAIL;
  for (size_t j = 0; j < chain.outputs.size(); ++j) (*out)[j] = shapes[chain.outputs[j]];
  return MX_SUCCESS;
}

#endif  // LCNN_LOOKUP_CHAIN_ATTRS_H_
