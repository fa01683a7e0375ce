// lcnn-predict: run an exported (hybridized) MXNet model, with the LCNN operator library,
// through MXNet's C predict API; print the top classes (softmax scores) and the median latency (the
// median: a shared machine's occasional slow run moves a mean by more than the change measured).
//
//   lcnn-predict --symbol P-symbol.json --params P-0000.params --library liblcnn_ops.so
//                --input digit.png|x.npy [--shape C,H,W] [--mean a,b,c] [--std a,b,c]
//                [--resize N] [--repeat N] [--top K] [--batch N] [--threads T]
//
// Images are decoded and resized by MXNet's own _cvimdecode / _cvimresize (no other image
// library): shorter side to --resize then a centre crop of --shape (or straight to --shape
// without --resize); pixels become (x - mean) / std, channels RGB, layout CHW.
// A .npy input (float32, C-order, (C,H,W) or (1,C,H,W)) is fed as it is. --batch N feeds N
// copies of the input at once (scores printed for the first; latency per batch and per image);
// --threads T runs MXNet and the operator with T OpenMP threads (the program restarts itself
// with OMP_NUM_THREADS=T: OpenMP reads it when the libraries load), on MXNet's NaiveEngine
// unless MXNET_ENGINE_TYPE is set.
#include <dlfcn.h>
#include <mxnet/c_api.h>
#include <mxnet/c_predict_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" int NNGetOpHandle(const char* op_name, void** op_out);  // nnvm/c_api.h

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

static void Check(int status, const std::string& what) {
  if (status != 0) throw Error(what + ": " + MXGetLastError());
}

static std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

static int PositiveInt(const std::string& text, const std::string& flag) {
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 1) throw Error(flag + " " + text + ": must be a positive integer");
  return value;
}

static std::vector<float> Numbers(const std::string& text, const std::string& flag) {
  std::vector<float> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    try {
      out.push_back(std::stof(item));
    } catch (const std::exception&) {
      throw Error(flag + " " + text + ": not a comma-separated list of numbers");
    }
  }
  return out;
}

// ---------------------------------------------------------------- input
static std::vector<float> LoadNpy(const std::string& path, std::vector<uint32_t>* shape) {
  std::string raw = ReadFile(path);
  if (raw.size() < 10 || raw.compare(0, 6, "\x93NUMPY") != 0) throw Error(path + ": not a .npy file");
  const size_t header_len = raw[6] == 1 ? (uint8_t(raw[8]) | uint8_t(raw[9]) << 8) : 0;
  const size_t start = raw[6] == 1 ? 10 : 12;
  const std::string header = raw.substr(start, raw[6] == 1 ? header_len : raw.find('\n', start) - start);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    throw Error(path + ": must be float32 ('<f4') in C order, header " + header);
  std::string dims = header.substr(header.find('(') + 1, header.find(')') - header.find('(') - 1);
  shape->clear();
  for (float d : Numbers(dims.back() == ',' ? dims.substr(0, dims.size() - 1) : dims, path))
    shape->push_back(static_cast<uint32_t>(d));
  if (shape->size() == 4 && (*shape)[0] == 1) shape->erase(shape->begin());
  if (shape->size() != 3) throw Error(path + ": shape must be (C,H,W) or (1,C,H,W)");
  const size_t count = size_t((*shape)[0]) * (*shape)[1] * (*shape)[2];
  const size_t offset = start + (raw[6] == 1 ? header_len : header.size() + 1);
  if (raw.size() < offset + count * 4) throw Error(path + ": truncated data");
  std::vector<float> values(count);
  std::copy_n(reinterpret_cast<const float*>(raw.data() + offset), count, values.data());
  return values;
}

// Invoke an MXNet operator on one input; returns the output NDArray handle.
static NDArrayHandle Invoke(const char* op, NDArrayHandle input,
                            const std::map<std::string, std::string>& params) {
  void* creator = nullptr;
  Check(NNGetOpHandle(op, &creator), std::string("operator ") + op);
  std::vector<const char*> keys, vals;
  for (const auto& kv : params) keys.push_back(kv.first.c_str()), vals.push_back(kv.second.c_str());
  int num_out = 0;
  NDArrayHandle* outs = nullptr;
  Check(MXImperativeInvoke(creator, 1, &input, &num_out, &outs, static_cast<int>(keys.size()),
                           keys.data(), vals.data()), op);
  return outs[0];
}

static std::vector<uint32_t> Shape(NDArrayHandle a) {
  uint32_t ndim = 0;
  const uint32_t* dims = nullptr;
  Check(MXNDArrayGetShape(a, &ndim, &dims), "shape");
  return std::vector<uint32_t>(dims, dims + ndim);
}

// Decode, resize (shorter side) and centre-crop an image: HWC uint8 pixels of (c, h, w).
static std::vector<uint8_t> LoadImage(const std::string& path, int c, int h, int w, int resize) {
  std::string bytes = ReadFile(path);
  const uint32_t len = static_cast<uint32_t>(bytes.size());
  NDArrayHandle raw = nullptr;
  Check(MXNDArrayCreateEx(&len, 1, 1, 0, 0, 3 /* uint8 */, &raw), "input buffer");
  Check(MXNDArraySyncCopyFromCPU(raw, bytes.data(), bytes.size()), "input buffer");
  NDArrayHandle img = Invoke("_cvimdecode", raw, {{"flag", c == 1 ? "0" : "1"}, {"to_rgb", "1"}});
  std::vector<uint32_t> s = Shape(img);  // (H, W, C)
  if (s.size() != 3 || s[0] == 0) throw Error(path + ": not a decodable image");
  int nh = h, nw = w;
  if (resize > 0) {
    nh = s[0] < s[1] ? resize : int(int64_t(s[0]) * resize / s[1]);
    nw = s[0] < s[1] ? int(int64_t(s[1]) * resize / s[0]) : resize;
  }
  NDArrayHandle sized = img;
  if (nh != int(s[0]) || nw != int(s[1]))
    sized = Invoke("_cvimresize", img, {{"w", std::to_string(nw)}, {"h", std::to_string(nh)}});
  s = Shape(sized);
  if (int(s[0]) < h || int(s[1]) < w) throw Error(path + ": image smaller than --shape after resizing");
  std::vector<uint8_t> full(size_t(s[0]) * s[1] * s[2]), out(size_t(h) * w * c);
  Check(MXNDArraySyncCopyToCPU(sized, full.data(), full.size()), "decoded image");
  const int top = (s[0] - h) / 2, left = (s[1] - w) / 2;
  for (int y = 0; y < h; ++y)
    std::copy_n(&full[((size_t(top) + y) * s[1] + left) * s[2]], size_t(w) * c, &out[size_t(y) * w * c]);
  for (NDArrayHandle a : {raw, img}) MXNDArrayFree(a);
  if (sized != img) MXNDArrayFree(sized);
  return out;
}

// ---------------------------------------------------------------- main
static int Run(int argc, char** argv) {
  std::map<std::string, std::string> opt = {{"--shape", ""}, {"--mean", ""}, {"--std", ""},
                                            {"--resize", "0"}, {"--repeat", "1"}, {"--top", "5"},
                                            {"--library", ""}, {"--batch", "1"}, {"--threads", ""}};
  try {
    for (int i = 1; i < argc; i += 2) {
      std::string key = argv[i];
      if (key == "-h" || key == "--help") {
        std::printf("usage: %s --symbol S --params P [--library L] --input IMAGE_OR_NPY [--shape C,H,W]"
                    " [--mean ...] [--std ...] [--resize N] [--repeat N] [--top K]\n", argv[0]);
        return 0;
      }
      if (i + 1 >= argc) throw Error(key + " needs a value");
      opt[key] = argv[i + 1];
    }
    for (const char* need : {"--symbol", "--params", "--input"})
      if (opt[need].empty()) throw Error(std::string(need) + " is required (see --help)");
    const int batch = PositiveInt(opt["--batch"], "--batch");
    // Restart once with the environment the libraries read when they load: the thread count,
    // and MXNet's engine, NaiveEngine unless the user chose one (operators run in the calling
    // thread, as in Python's latency benchmarks; with the default threaded engine AlexNet-LCNN-
    // fast at batch 16 took 12.5-14.2 ms at two threads against 7.4-8.1, benchmarks/RESULTS.md
    // run 27).
    bool restart = false;
    if (!opt["--threads"].empty()) {
      const std::string threads = std::to_string(PositiveInt(opt["--threads"], "--threads"));
      const char* current = std::getenv("OMP_NUM_THREADS");
      if (!current || threads != current) setenv("OMP_NUM_THREADS", threads.c_str(), 1), restart = true;
    }
    if (!std::getenv("MXNET_ENGINE_TYPE")) setenv("MXNET_ENGINE_TYPE", "NaiveEngine", 1), restart = true;
    if (restart) {
      execv("/proc/self/exe", argv);
      throw Error("cannot restart with the thread count and engine set");
    }
    if (!opt["--library"].empty()) {
      Check(MXLoadLib(opt["--library"].c_str(), 0), "loading " + opt["--library"]);
      // the kernel set the library chose when it loaded (operators/library_init.cc)
      if (void* loaded = dlopen(opt["--library"].c_str(), RTLD_NOW | RTLD_NOLOAD)) {
        if (auto isa = reinterpret_cast<const char* (*)()>(dlsym(loaded, "lcnn_kernel_isa")))
          std::printf("kernels: %s\n", isa());
        dlclose(loaded);
      }
    }

    std::vector<uint32_t> shape;
    std::vector<float> input;
    const std::string& path = opt["--input"];
    if (path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0) {
      input = LoadNpy(path, &shape);
    } else {
      std::vector<float> dims = Numbers(opt["--shape"], "--shape");
      if (dims.size() != 3) throw Error("--shape C,H,W is required for an image input");
      shape = {uint32_t(dims[0]), uint32_t(dims[1]), uint32_t(dims[2])};
      std::vector<float> mean = opt["--mean"].empty() ? std::vector<float>(shape[0], 0.f) : Numbers(opt["--mean"], "--mean");
      std::vector<float> stdv = opt["--std"].empty() ? std::vector<float>(shape[0], 1.f) : Numbers(opt["--std"], "--std");
      if (mean.size() != shape[0] || stdv.size() != shape[0]) throw Error("--mean and --std need one value per channel");
      std::vector<uint8_t> px = LoadImage(path, shape[0], shape[1], shape[2], std::stoi(opt["--resize"]));
      const size_t plane = size_t(shape[1]) * shape[2];
      input.resize(plane * shape[0]);
      for (size_t i = 0; i < plane; ++i)
        for (uint32_t ch = 0; ch < shape[0]; ++ch)
          input[ch * plane + i] = (px[i * shape[0] + ch] - mean[ch]) / stdv[ch];
    }

    std::string symbol = ReadFile(opt["--symbol"]), params = ReadFile(opt["--params"]);
    const char* keys[] = {"data"};
    const uint32_t indptr[] = {0, 4}, dims[] = {uint32_t(batch), shape[0], shape[1], shape[2]};
    std::vector<float> image = input;  // the same image `batch` times
    input.clear();
    for (int b = 0; b < batch; ++b) input.insert(input.end(), image.begin(), image.end());
    PredictorHandle pred = nullptr;
    Check(MXPredCreate(symbol.c_str(), params.data(), int(params.size()), 1, 0, 1, keys, indptr, dims, &pred),
          "creating the predictor");
    uint32_t* out_shape = nullptr;
    uint32_t out_ndim = 0;
    Check(MXPredGetOutputShape(pred, 0, &out_shape, &out_ndim), "output shape");
    const size_t outputs = std::accumulate(out_shape, out_shape + out_ndim, size_t(1), std::multiplies<size_t>());
    const size_t classes = outputs / batch;
    std::vector<float> all_scores(outputs);
    const int repeat = std::max(1, std::stoi(opt["--repeat"]));
    std::vector<double> times;
    for (int r = -1; r < repeat; ++r) {  // r = -1: warm-up, not timed
      auto start = std::chrono::steady_clock::now();
      Check(MXPredSetInput(pred, "data", input.data(), uint32_t(input.size())), "setting the input");
      Check(MXPredForward(pred), "forward");
      Check(MXPredGetOutput(pred, 0, all_scores.data(), uint32_t(outputs)), "reading the output");
      if (r >= 0) times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::vector<float> scores(all_scores.begin(), all_scores.begin() + classes);  // the first image
    const float top = *std::max_element(scores.begin(), scores.end());
    double sum = 0;
    for (float& s : scores) sum += (s = std::exp(s - top));
    for (float& s : scores) s = float(s / sum);
    std::vector<size_t> order(classes);
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min<size_t>(classes, std::stoul(opt["--top"]));
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    std::printf("top-%zu:\n", k);
    for (size_t i = 0; i < k; ++i) std::printf("  %zu. class %zu score %.6f\n", i + 1, order[i], scores[order[i]]);
    const char* threads = std::getenv("OMP_NUM_THREADS");
    std::sort(times.begin(), times.end());
    const double median = repeat % 2 ? times[repeat / 2] : (times[repeat / 2 - 1] + times[repeat / 2]) / 2;
    std::printf("latency: %.4f ms (median of %d runs)\n", median, repeat);
    std::printf("batch %d, %s threads: %.4f ms per batch, %.4f ms per image\n", batch,
                threads ? threads : "default", median, median / batch);
    MXPredFree(pred);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lcnn-predict: %s\n", e.what());
    return 2;
  }
  return 0;
}

int main(int argc, char** argv) {
  const int status = Run(argc, argv);
  // MXPredFree and MXNDArrayFree leave the deletions to MXNet's engine threads: wait for them
  // and stop the engine before exit() destroys MXNet's statics (docs/platform.md, "C predict API").
  MXNDArrayWaitAll();
  MXNotifyShutdown();
  return status;
}
