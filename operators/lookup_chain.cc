// lcnn_lookup_chain: a run of lookup layers (lcnn_lookup_conv, lookup_conv_format.h) as one
// operator, so that in a batch groups of images go through the run's layers of large maps one
// group after another (each thread its own groups): a group's activations stay in cache (L2, or
// L3 where one image's outgrow L2) from layer to layer, where the whole batch's (12.8 MB a
// tensor in ResNet-18's first stage) go to memory.
// lcnn_gluon/chain.py writes it into an export; its attributes, inputs and outputs, parsed and
// checked, are in lookup_chain_attrs.h.
//
// Each layer runs on a state of lcnn_lookup_conv of its own; the chain hands it views of the
// activations. Every error (attributes, shapes, wiring) is an MX_FAIL with a message.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core_caches.h"
#include "lookup_chain_attrs.h"
#include "lookup_conv_clocks.h"
#include "lookup_conv_attrs.h"
#include "lookup_conv_plan.h"

// Images per group. ResNet-18-fast 0.05 at batch 16, one thread, whole network, against the
// layers as separate operators (Zen 4, 30-60 alternating pairs): groups of 1, 2 and 4 took
// 0.97, 0.93-0.95 and 0.94 of the time (densities 0.01 and 0.03: 0.91 and 0.92 in groups of 2).
// With more threads each takes groups of its own, one thread a layer: threads that shared each
// image's layers (groups of 2 or 4 for two threads) were no faster than the whole batch
// (0.96-1.32).
static const int64_t kChainGroupImages = 2;
// ... except where fewer images keep each grouped layer's input and output in one core's L2 and
// that many do not: the Intel Xeon's 2 MB holds one image of ResNet-18's first stage (0.8 MB
// in, 0.8 out) and not two. ResNet-18-fast 0.03 at batch 16 (lcnn-predict, alternating calls,
// medians) took in groups of 1 0.93-0.97 of the time of pairs at two threads (8 rounds) and
// 0.94-1.05, most 0.98-0.99, at one (16 rounds); ResNet-18-accurate 0.05 0.97-1.05. Groups
// that fit L2 take as many images as fit, up to kChainGroupImages. Single images also take
// the 14x14 stage (below): ResNet-18-fast 0.03 at batch 16 medians 0.947 at two threads (10
// rounds) and 0.976 at one (16), ResNet-18-accurate 0.05 0.99 at two (16) and 1.01 at one (6).
// The L2 of a core: core_caches.h (the tests set LCNN_L2_BYTES to cover both kinds of group).
// ... for the layers whose output of the whole batch is larger than this: the share of L3 a
// core of a 2-core Zen 4 VM kept (4-8 MB). ResNet-18's first two stages at batch 16 (12.8 and
// 6.4 MB a tensor) are; AlexNet's layers (3 MB at most), grouped all the same, were 1.02 (one
// thread) and 1.04-1.05 (two) times as slow as the batch whole.
static const int64_t kChainMinBatchBytes = 4 << 20;
namespace {

// How a call runs (built when the input shape or the threads change): the layers in order, in
// groups of `group` images where `grouped[i]`; consecutive grouped layers form one segment that
// runs group by group. A layer's output lives in the chain's output, in a buffer of the whole
// batch, or (made and used only inside one segment) in a buffer of one group.
struct ChainPlan {
  int64_t batch = -1, group = 1;
  int threads = 0;
  std::vector<std::vector<int64_t>> shapes;  // each layer's output (N, n, Yo, Xo)
  std::vector<char> grouped;
  std::vector<int> segment_end;              // the end of layer i's segment (i + 1 if not grouped)
  std::vector<int> output_of;                // chain output holding layer i's output, or -1
  std::vector<char> group_sized;             // layer i's output held for one group only
  int workers = 1;                           // threads taking groups of their own
  std::vector<std::vector<float>> buffers;   // worker w's copy of buffer b: buffers[b * workers + w]
  std::vector<std::vector<float*>> buffer_of;  // worker w's buffer of layer i (null: a chain output)
  int64_t image_floats_in = 0;               // one image of the chain's data
  // each worker's tensors of layer i, as lcnn_lookup_conv takes them
  std::vector<std::vector<std::vector<MXTensor>>> layer_inputs, layer_outputs;
};

class LookupChain : public CustomStatefulOp {
 public:
  explicit LookupChain(Chain chain) : chain_(std::move(chain)) {}

  MXReturnValue Forward(std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                        const OpResource& res) override {
    LCNN_SCOPE_CLOCK(call, "call of a chain (its layers' calls inside)");
    const int threads = std::max(1, omp_get_max_threads());
    if (Plan(*inputs, threads) != MX_SUCCESS) return MX_FAIL;
    const int n = static_cast<int>(chain_.layers.size());
    for (int start = 0; start < n;) {
      const int end = plan_.segment_end[start];
      if (!plan_.grouped[start]) {
        if (RunLayer(0, start, 0, inputs, outputs, res) != MX_SUCCESS) return MX_FAIL;
      } else {
        // The workers' layer states check the packed content as they run, and report what is
        // wrong in lib_api's error list, which is not safe for two threads at once: they run
        // at once only with weights that all of them already ran (same arrays, same versions),
        // otherwise one after the other.
        // A worker's state of a layer compares the content on its first group of the call only
        // (`ran`: worker w ran layer i this call). ResNet-18-fast 0.05 at batch 16, one thread:
        // the compares of its 16 groups took 0.8% of the call.
        const int64_t groups = plan_.batch / plan_.group;
        const bool together = plan_.workers > 1 && SameWeights(*inputs);
        std::vector<char> ran(static_cast<size_t>(plan_.workers) * (end - start), 0);
        bool failed = false;
#pragma omp parallel for schedule(static) num_threads(together ? plan_.workers : 1) reduction(|| : failed)
        for (int64_t g = 0; g < groups; ++g) {
          const int w = together ? omp_get_thread_num() : static_cast<int>(g % plan_.workers);
          if (plan_.workers > 1) omp_set_num_threads(1);  // (this worker's layers: one thread each)
          for (int i = start; i < end && !failed; ++i) {
            char& done = ran[static_cast<size_t>(w) * (end - start) + (i - start)];
            if (done) ops_[w][i]->SameContentNext();
            failed = RunLayer(w, i, g * plan_.group, inputs, outputs, res) != MX_SUCCESS;
            done = !failed;
          }
        }
        if (failed) {
          ran_weights_.clear();
          return MX_FAIL;
        }
      }
      start = end;
    }
    ran_weights_.clear();
    for (size_t k = 1; k < inputs->size(); ++k) ran_weights_.emplace_back((*inputs)[k].data_ptr, (*inputs)[k].verID);
    return MX_SUCCESS;
  }

 private:
  // Layer i on images [b0, b0 + its group), by worker w: its tensors (kept by the plan, shapes
  // and all, so that a call allocates nothing) pointed at the data of this call and group.
  MXReturnValue RunLayer(int w, int i, int64_t b0, std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                         const OpResource& res) {
    const Layer& layer = chain_.layers[i];
    const auto at = [&](int src) {  // images from b0 of a source
      if (src < 0) return (*inputs)[0].data<float>() + b0 * plan_.image_floats_in;
      const auto& s = plan_.shapes[src];
      float* base = plan_.output_of[src] >= 0 ? (*outputs)[plan_.output_of[src]].data<float>() : plan_.buffer_of[w][src];
      return base + (plan_.group_sized[src] ? 0 : b0 * s[1] * s[2] * s[3]);
    };
    std::vector<MXTensor>& in = plan_.layer_inputs[w][i];
    in[kData].data_ptr = at(layer.data);
    for (int k = 0; k < kLayerWeights; ++k) {
      const MXTensor& weight = (*inputs)[1 + kLayerWeights * i + k];
      in[1 + k].data_ptr = weight.data_ptr;
      in[1 + k].verID = weight.verID;
      if (in[1 + k].shape != weight.shape) in[1 + k].shape = weight.shape;  // (new weights: the layer checks them)
    }
    if (layer.params.residual) in[kResidual].data_ptr = at(layer.shortcut);
    plan_.layer_outputs[w][i][0].data_ptr = at(i);
    return ops_[w][i]->Forward(&in, &plan_.layer_outputs[w][i], res);
  }

  // Whether the weights are the arrays, at the versions, of the last call that ran them all.
  bool SameWeights(const std::vector<MXTensor>& inputs) const {
    if (ran_weights_.size() + 1 != inputs.size()) return false;
    for (size_t k = 1; k < inputs.size(); ++k)
      if (ran_weights_[k - 1] != std::make_pair(inputs[k].data_ptr, inputs[k].verID)) return false;
    return true;
  }

  MXReturnValue Plan(const std::vector<MXTensor>& inputs, int threads);

  Chain chain_;
  std::vector<std::vector<std::unique_ptr<LookupConvState>>> ops_;  // each worker's layer states
  ChainPlan plan_;
  std::vector<std::pair<void*, size_t>> ran_weights_;  // the weights (array, version) of the last call
};

MXReturnValue LookupChain::Plan(const std::vector<MXTensor>& inputs, int threads) {
  const int64_t batch = inputs[0].shape.size() == 4 ? inputs[0].shape[0] : -1;
  if (batch == plan_.batch && threads == plan_.threads) return MX_SUCCESS;
  ChainPlan p;
  p.batch = batch, p.threads = threads;
  std::vector<std::vector<unsigned int>> in, shapes;
  for (const MXTensor& t : inputs) in.emplace_back(t.shape.begin(), t.shape.end());
  if (LayerShapes(chain_, in, &shapes) != MX_SUCCESS) return MX_FAIL;
  const int n = static_cast<int>(chain_.layers.size());
  for (const auto& s : shapes) p.shapes.emplace_back(s.begin(), s.end());
  // Groups only for layers whose batch does not stay in cache and whose plans take no images
  // together (small maps run their batch in one product); of the most images up to
  // kChainGroupImages, or as many as stay in L2, that divide the batch (every group then has
  // one shape, and each layer's state one plan), when every thread gets one.
  std::vector<char> groupable(n, 0), large_maps(n, 0);
  std::vector<int64_t> batch_bytes(n), image_bytes(n);  // each layer's output; one image's input and output
  int64_t largest = 0;  // image_bytes of the largest groupable layer
  const auto one_image_bytes = [&](const auto& shape) {  // of an (N, C, H, W) activation
    return static_cast<int64_t>(shape[1] * shape[2] * shape[3] * sizeof(float));
  };
  for (int i = 0; i < n; ++i) {
    const auto& s = p.shapes[i];
    const int src = chain_.layers[i].data;
    const int64_t out_bytes = one_image_bytes(s);
    batch_bytes[i] = s[0] * out_bytes;
    image_bytes[i] = (src < 0 ? one_image_bytes(in[0]) : one_image_bytes(p.shapes[src])) + out_bytes;
    large_maps[i] = s[2] * s[3] > kBatchedProductMaxPixels;
    groupable[i] = large_maps[i] && batch_bytes[i] > kChainMinBatchBytes;
    if (groupable[i]) largest = std::max(largest, image_bytes[i]);
  }
  int64_t l2 = 0;
  if (CoreCacheBytes(kCoreL2, "lcnn_lookup_chain", &l2) != MX_SUCCESS) return MX_FAIL;
  const int64_t most = largest > 0 && largest <= l2 ? std::min(kChainGroupImages, l2 / largest) : kChainGroupImages;
  // Single images stay in L2 from layer to layer: then also the layers whose batch outgrows L2,
  // not only the share of L3, go image by image (ResNet-18's 14x14 stage at batch 16, 3.2 MB).
  if (most == 1)
    for (int i = 0; i < n; ++i)
      groupable[i] = groupable[i] || (large_maps[i] && batch_bytes[i] > l2 && image_bytes[i] <= l2);
  p.group = std::max<int64_t>(batch, 1);
  if (batch > most)
    for (int64_t g = most; g >= 1; --g)
      if (batch % g == 0) {
        p.group = g;
        break;
      }
  if (batch / p.group < threads) p.group = std::max<int64_t>(batch, 1);  // a group for every thread, or none
  p.workers = p.group < batch ? threads : 1;
  p.grouped.assign(n, 0);
  for (int i = 0; i < n; ++i) p.grouped[i] = p.group < batch && groupable[i];
  p.segment_end.assign(n, n);
  for (int i = n - 1; i >= 0; --i)
    p.segment_end[i] = !p.grouped[i] ? i + 1 : (i + 1 < n && p.grouped[i + 1] ? p.segment_end[i + 1] : i + 1);
  p.output_of.assign(n, -1);
  for (size_t j = 0; j < chain_.outputs.size(); ++j) p.output_of[chain_.outputs[j]] = static_cast<int>(j);
  std::vector<int> seg_start(n), last_use(n, -1);
  for (int i = 0; i < n; ++i) seg_start[i] = i > 0 && p.grouped[i] && p.grouped[i - 1] ? seg_start[i - 1] : i;
  for (int i = 0; i < n; ++i) {
    const Layer& layer = chain_.layers[i];
    for (int src : {layer.data, layer.params.residual ? layer.shortcut : -1})
      if (src >= 0) last_use[src] = i;
  }
  p.group_sized.assign(n, 0);
  for (int i = 0; i < n; ++i) {
    bool inside = p.grouped[i] && p.output_of[i] < 0;
    for (int c = i + 1; c <= last_use[i] && inside; ++c) {
      const Layer& layer = chain_.layers[c];
      const bool reads = layer.data == i || (layer.params.residual && layer.shortcut == i);
      if (reads && seg_start[c] != seg_start[i]) inside = false;
    }
    p.group_sized[i] = inside;
  }
  // Buffers, reused once the output they hold is read for the last time. Inside a segment,
  // whose layers run again for every group, a buffer of one group's images is free again as
  // soon as the group is done with it (the next group writes it anew), but only for another
  // buffer of one group: a buffer of the whole batch written or read inside the segment is
  // kept until the segment is over. An output is never written over its own layer's inputs.
  std::vector<int> buffer_index(n, -1);
  std::vector<int64_t> sizes;
  std::vector<char> busy, group_only;  // group_only: freed inside the current segment
  std::vector<int> deferred;           // whole-batch buffers freed when the segment is over
  std::vector<int> freed_at;           // the layer after which a buffer was last freed
  for (int i = 0; i < n; ++i) {
    if (p.output_of[i] < 0) {
      const auto& s = p.shapes[i];
      const int64_t floats = (p.group_sized[i] ? p.group : s[0]) * s[1] * s[2] * s[3];
      int pick = -1;  // the buffer freed last (the likeliest still in cache), as MXNet's plan does
      for (size_t b = 0; b < busy.size(); ++b)
        if (!busy[b] && (p.group_sized[i] || !group_only[b]) && (pick < 0 || freed_at[b] > freed_at[pick]))
          pick = static_cast<int>(b);
      if (pick < 0) {
        pick = static_cast<int>(busy.size());
        busy.push_back(0), group_only.push_back(0), sizes.push_back(0), freed_at.push_back(-1);
      }
      sizes[pick] = std::max(sizes[pick], floats);
      busy[pick] = 1;
      buffer_index[i] = pick;
    }
    const Layer& layer = chain_.layers[i];
    std::vector<int> freed;
    for (int src : {layer.data, layer.params.residual ? layer.shortcut : -1})
      if (src >= 0 && last_use[src] == i) freed.push_back(src);
    if (last_use[i] < 0) freed.push_back(i);  // (read by no one)
    for (int src : freed) {
      const int b = buffer_index[src];
      if (b < 0) continue;
      if (!p.grouped[i]) {
        busy[b] = 0, freed_at[b] = i;
      } else if (p.group_sized[src]) {
        busy[b] = 0, group_only[b] = 1, freed_at[b] = i;
      } else {
        deferred.push_back(b);
      }
    }
    if (p.grouped[i] && p.segment_end[i] == i + 1) {  // the segment is over
      for (int b : deferred) busy[b] = 0, freed_at[b] = i;
      deferred.clear();
      std::fill(group_only.begin(), group_only.end(), 0);
    }
  }
  // Buffers holding a group's images are each worker's own; the others, worker 0's, shared.
  std::vector<char> per_worker(sizes.size(), 0);
  for (int i = 0; i < n; ++i)
    if (buffer_index[i] >= 0 && p.group_sized[i]) per_worker[buffer_index[i]] = 1;
  const int64_t page = 4096 / sizeof(float);
  p.buffers.resize(sizes.size() * p.workers);
  for (size_t b = 0; b < sizes.size(); ++b)
    for (int w = 0; w < (per_worker[b] ? p.workers : 1); ++w) p.buffers[b * p.workers + w].assign(sizes[b] + page, 0.f);
  p.buffer_of.assign(p.workers, std::vector<float*>(n, nullptr));
  for (int w = 0; w < p.workers; ++w)
    for (int i = 0; i < n; ++i) {
      if (buffer_index[i] < 0) continue;
      const uintptr_t at =
          reinterpret_cast<uintptr_t>(p.buffers[buffer_index[i] * p.workers + (p.group_sized[i] ? w : 0)].data());
      p.buffer_of[w][i] = reinterpret_cast<float*>((at + 4095) & ~static_cast<uintptr_t>(4095));
    }
  const auto& x = inputs[0].shape;
  p.image_floats_in = x[1] * x[2] * x[3];
  p.layer_inputs.resize(p.workers), p.layer_outputs.resize(p.workers);
  for (int i = 0; i < n; ++i) {  // each tensor with the images of one call of the layer
    const Layer& layer = chain_.layers[i];
    const int64_t images = p.grouped[i] ? p.group : std::max<int64_t>(batch, 0);
    const auto activation = [&](int src) {
      std::vector<int64_t> shape = src < 0 ? x : p.shapes[src];
      shape[0] = images;
      return MXTensor(nullptr, shape, kFloat32, 0, inputs[0].ctx);
    };
    std::vector<MXTensor> in{activation(layer.data)};
    for (int k = 0; k < kLayerWeights; ++k) in.push_back(inputs[1 + kLayerWeights * i + k]);
    if (layer.params.residual) in.push_back(activation(layer.shortcut));
    for (int w = 0; w < p.workers; ++w) {
      p.layer_inputs[w].push_back(in);
      p.layer_outputs[w].push_back({activation(i)});
    }
  }
  ran_weights_.clear();  // (new tensors, perhaps new workers: nothing ran with this plan yet)
  while (static_cast<int>(ops_.size()) < p.workers) {  // each worker's states of the layers
    ops_.emplace_back();
    for (const Layer& layer : chain_.layers) ops_.back().emplace_back(MakeChosenLookupConv(layer.params));
  }
  plan_ = std::move(p);
  return MX_SUCCESS;
}

MXReturnValue CreateState(const std::unordered_map<std::string, std::string>& attrs, const MXContext& ctx,
                          const std::vector<std::vector<unsigned int>>& in, const std::vector<int> types,
                          CustomStatefulOp** op) {
  Chain chain;
  if (ParseChain(attrs, &chain) != MX_SUCCESS) return MX_FAIL;
  *op = CustomStatefulOp::create<LookupChain>(std::move(chain));
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(lcnn_lookup_chain)
    .setParseAttrs(ParseAttrs)
    .setInferType(InferType)
    .setInferShape(InferShape)
    .setCreateOpState(CreateState, "cpu");
