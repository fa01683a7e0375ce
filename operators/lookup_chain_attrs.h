// The attributes, inputs and outputs of lcnn_lookup_chain (lookup_chain.cc), as lcnn_gluon/chain.py
// writes them into an export:
//
//   num_layers        "L"
//   layers            "<layer 0>;<layer 1>;...": L layers, each "name=value" fields joined by '|':
//                     the layer's attributes of lcnn_lookup_conv (kernel, stride, pad, ...) and
//                       data=<src>      where its input comes from: -1 the chain's data, j a layer j < i
//                       shortcut=<src>  the same for its residual (only with residual = 1)
//                     (no name or value holds ';' or '|', nor a name '=')
//   outputs           "j,k,...": the layers whose outputs are the chain's outputs, in order
//   flat_outputs      "p,q,...", optional: the chain's outputs (positions in `outputs`) given
//                     flattened as MXNet's Flatten gives them, (N, C * H * W): the same floats
//   inputs            data, then layer i's dictionary, indptr, indices, coefs and bias
//                     (inputs 1 + 5i .. 5 + 5i), as in lcnn_lookup_conv
//
// Why the layers in one attribute: MXNet copies a node's attributes several times on every call
// of a static CachedOp (nnvm::NodeAttrs in imperative::PushOperator) and lib_api hands them to
// parseAttrs as a map each time: about 0.4 us an attribute a call, where AlexNet's chain had 61,
// one a layer field (183 unused attributes added: 1.078 of its call at batch 1, two threads).
//
// ParseChain reads and checks them; the shape and type inference run lcnn_lookup_conv's for each
// layer in turn. Only lookup_chain.cc includes this header.
#ifndef LCNN_LOOKUP_CHAIN_ATTRS_H_
#define LCNN_LOOKUP_CHAIN_ATTRS_H_

#include <algorithm>
#include <cctype>
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
  std::vector<char> flat;    // per chain output: given as (N, C * H * W)
};

static const char kLayerSeparator = ';', kFieldSeparator = '|';

static inline bool ParseInt(const std::string& text, int* v) {
  std::istringstream in(text);
  std::string extra;
  return static_cast<bool>(in >> *v) && !(in >> extra);
}

// `text` split at each `separator` (an empty text: one empty part).
static inline std::vector<std::string> Split(const std::string& text, char separator) {
  std::vector<std::string> parts(1);
  for (char c : text) {
    if (c == separator) parts.emplace_back();
    else parts.back().push_back(c);
  }
  return parts;
}

// Layer i's fields ("name=value" joined by kFieldSeparator) into *layer.
static inline MXReturnValue ParseLayer(const std::string& text, int i, Layer* layer) {
  for (const std::string& field : Split(text, kFieldSeparator)) {
    const size_t eq = field.find('=');
    if (eq == std::string::npos || eq == 0) {
      MX_ERROR_MSG << "lcnn_lookup_chain: layer " << i << "'s field '" << field << "' is not name=value";
      return MX_FAIL;
    }
    const std::string name = field.substr(0, eq), value = field.substr(eq + 1);
    if (name == "data" || name == "shortcut") {
      int src = 0;
      if (!ParseInt(value, &src) || src < -1 || src >= i) {
        MX_ERROR_MSG << "lcnn_lookup_chain: layer " << i << "'s " << name << " must be -1 or a layer before " << i
                     << ", got '" << value << "'";
        return MX_FAIL;
      }
      (name == "data" ? layer->data : layer->shortcut) = src;
    } else {
      layer->attrs[name] = value;
    }
  }
  return GetParams(layer->attrs, &layer->params);
}

// The positions listed in `text` ("j,k,..."), each in [0, n); false if one is not.
static inline bool ParseList(const std::string& text, int n, std::vector<int>* items) {
  for (const std::string& item : Split(text, ',')) {
    int j = 0;
    if (!ParseInt(item, &j) || j < 0 || j >= n) return false;
    items->push_back(j);
  }
  return true;
}

// The chain described by `attrs`, every field checked.
static inline MXReturnValue ParseChain(const std::unordered_map<std::string, std::string>& attrs, Chain* chain) {
  const auto get = [&](const std::string& key) {
    auto it = attrs.find(key);
    return it == attrs.end() ? std::string() : it->second;
  };
  for (const auto& kv : attrs) {
    if (kv.first.rfind("__", 0) == 0) continue;  // MXNet's own annotations
    if (kv.first != "num_layers" && kv.first != "layers" && kv.first != "outputs" && kv.first != "flat_outputs") {
      const bool per_layer = kv.first.size() > 1 && kv.first[0] == 'l' && std::isdigit(static_cast<unsigned char>(kv.first[1]));
      MX_ERROR_MSG << "lcnn_lookup_chain: unknown attribute '" << kv.first << "'"
                   << (per_layer ? " (an export from before the layers attribute: export the model again)" : "");
      return MX_FAIL;
    }
  }
  int n = 0;
  if (!ParseInt(get("num_layers"), &n) || n < 1 || n > (1 << 16)) {
    MX_ERROR_MSG << "lcnn_lookup_chain: num_layers must be a positive integer, got '" << get("num_layers") << "'";
    return MX_FAIL;
  }
  const std::vector<std::string> layers = Split(get("layers"), kLayerSeparator);
  if (static_cast<int>(layers.size()) != n) {
    MX_ERROR_MSG << "lcnn_lookup_chain: layers must hold num_layers = " << n << " layers separated by '"
                 << kLayerSeparator << "', got " << layers.size();
    return MX_FAIL;
  }
  chain->layers.assign(n, Layer());
  for (int i = 0; i < n; ++i)
    if (ParseLayer(layers[i], i, &chain->layers[i]) != MX_SUCCESS) return MX_FAIL;
  if (!ParseList(get("outputs"), n, &chain->outputs)) {
    MX_ERROR_MSG << "lcnn_lookup_chain: outputs must list layers in [0, " << n << "), got '" << get("outputs") << "'";
    return MX_FAIL;
  }
  const int outputs = static_cast<int>(chain->outputs.size());
  std::vector<int> flat;
  if (attrs.count("flat_outputs") && !ParseList(get("flat_outputs"), outputs, &flat)) {
    MX_ERROR_MSG << "lcnn_lookup_chain: flat_outputs must list outputs in [0, " << outputs << "), got '"
                 << get("flat_outputs") << "'";
    return MX_FAIL;
  }
  chain->flat.assign(outputs, 0);
  for (int j : flat) chain->flat[j] = 1;
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
  for (size_t j = 0; j < chain.outputs.size(); ++j) {
    const std::vector<unsigned int>& s = shapes[chain.outputs[j]];
    (*out)[j] = chain.flat[j] ? std::vector<unsigned int>{s[0], s[1] * s[2] * s[3]} : s;
  }
  return MX_SUCCESS;
}

#endif  // LCNN_LOOKUP_CHAIN_ATTRS_H_
