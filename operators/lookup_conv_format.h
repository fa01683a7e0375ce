// The contract of lcnn_lookup_conv: the packed form of a lookup layer and the operator's
// attributes. Written once for both languages: lcnn_gluon/lookup/packed.py names the same
// fields in the same order (INPUTS, ATTRIBUTES there), and tests/test_packed_format.py checks
// that the two agree and that the operator equals the dense layer on random packed layers.
//
// A lookup layer has n output channels, m input channels, a dictionary of k vectors and a
// kh x kw kernel. Its lookup tensor P (n, k, kh, kw) is stored per output channel, as CSR:
//
//   input  name        dtype    shape           holds
//   0      data        float32  (N, m, H, W)    the layer's input (N may be 0)
//   1      dictionary  float32  (k, m) or (k, m, 1, 1); with dictionary_layout "mk" (m, k) or
//                               (m, k, 1, 1): row j holds input j's value in every vector
//   2      indptr      int32    (n + 1,)        row f's entries are [indptr[f], indptr[f+1])
//   3      indices     int32    (nnz,)          entry -> (d * kh + r) * kw + c: dictionary
//                                               vector d, kernel tap (r, c)
//   4      coefs       float32  (nnz,)          the entry's coefficient P[f, d, r, c]
//   5      bias        float32  (n,)            added to every output of channel f
//   6      residual    float32  (N, n, Ho, Wo)  only with residual=1: added before act
//
// Invariants, each checked (an MXNetError otherwise, never a crash): indptr[0] = 0,
// indptr non-decreasing, indptr[n] = nnz = len(coefs); 0 <= indices[j] < k * kh * kw;
// inside a row, indices need not be sorted and may repeat (the coefficients add).
// MXNet 1.x holds no zero-length arrays: a P without entries is packed as one zero
// coefficient in the last row (a no-op).
//
// Output: (N, n, Yo, Xo) float32, with (Ho, Wo) the convolution's output size (MXNet's
// rule: (H + 2 pad - kernel) / stride + 1) and (Yo, Xo) the same after the fused pooling:
//
//   y[f] = pool(act(bias[f] + residual[f] + sum over row f of coefs[j] * S[d] shifted by (r, c)))
//   S = D x pad(X)    (the 1x1 dictionary product; padding X or S is the same: no bias)
//
// Attributes (strings, as MXNet passes them; unknown ones are refused):
//   kernel       "K" or "(KH, KW)"   required, in [1, 65536]
//   num_filter   "n"                 required, in [1, 2^24]
//   stride       "(SH, SW)"          default 1, in [1, 65536]
//   pad          "(PH, PW)"          default 0, in [0, 65536]
//   act          "none" | "relu"     default none
//   pool_kernel, pool_stride, pool_pad   optional max-pooling ('valid' convention) after act
//   residual     "0" | "1"           1: a 7th input, added before act (not with pooling)
//   dictionary_layout  "km" | "mk"   default km; mk only for fully connected layers (kernel 1,
//                stride 1, pad 0, no pooling or residual, an input of 1x1): at batch 1 the
//                product then reads only the rows of D's transpose whose input is not zero
//                (after a ReLU, about half of them)
// Every size derived from them and the input shape must fit the kernels' 32-bit offsets
// (lookup_conv_attrs.h, Geometry). lcnn_lookup_chain (lookup_chain.cc) runs a sequence of
// such layers as one operator, each layer's attributes prefixed and its weights in this order.
#ifndef LCNN_LOOKUP_CONV_FORMAT_H_
#define LCNN_LOOKUP_CONV_FORMAT_H_

enum LookupConvInput { kData = 0, kDictionary, kIndptr, kIndices, kCoefs, kBias, kResidual };
static const char* const kInputNames[] = {"data", "dictionary", "indptr", "indices", "coefs", "bias",
                                          "residual"};
static const char* const kAttributeNames[] = {"kernel", "stride", "pad", "num_filter", "act",
                                              "pool_kernel", "pool_stride", "pool_pad", "residual",
                                              "dictionary_layout"};

// The packed index of dictionary vector d at kernel tap (r, c), and back.
static inline int PackIndex(int d, int r, int c, int kh, int kw) { return (d * kh + r) * kw + c; }
static inline void UnpackIndex(int index, int kh, int kw, int* d, int* r, int* c) {
  *d = index / (kh * kw);
  *r = index % (kh * kw) / kw;
  *c = index % kw;
}

#endif  // LCNN_LOOKUP_CONV_FORMAT_H_
