// The compressed forward of a codebook KAN layer (see methods/layers/kernels/__init__.py):
//   y[b, o] = sum_i  g[i, o] * T[b, i, idx[i, o]] + q[i, o] * S[b, i] + w[i, o] * A[b, i]
//   T[b, i, c] = gs * sum_j bases[b, i, j] * codes[c, j]
// with S the basis sums times the bias scale bs, A the activations times the base scale ws,
// and g, q, w the int8 (scaled) or float32 per-edge gains, biases and base weights, streamed
// (in, out). Two orders compute it, both without rebuilding a weight:
//   outputs  small batches: T for every (b, i), then per input row one pass along the outputs
//            (vectorized over o), the streams read once for the whole batch
//   batch    larger batches: blocks of kLanes batch rows; per block of inputs the tables
//            T (inputs, K, kLanes) are made in cache and every edge adds one scaled
//            table row to its output's kLanes accumulators (vectorized over the batch), so
//            the work per edge and batch row is three multiply-adds, against the dense
//            layer's G + k + 1, and nothing of batch x in x K size reaches memory
// Each batch row's sum runs over i in the same order in both.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

// Compiled for AVX-512 (x86-64-v4), AVX2 and baseline x86-64, picked at run time by the CPU
// (GCC function multiversioning). The v4 version lets GCC contract a * b + c into one fused
// multiply-add, which AVX2 alone and the baseline lack, so a result's last bits depend on
// the CPU. The outputs order's edge loop keeps to AVX2 (OUTPUTS_CLONES): its per-edge scalar
// table loads ran slower as AVX-512 code on the Xeon this was tuned on, and
// without FMA there it agrees with the batch order to rounding, not bit for bit.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define KANBENCH_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#define OUTPUTS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define KANBENCH_CLONES
#define OUTPUTS_CLONES
#endif

namespace {

constexpr int64_t kWidth = 16;  // floats per vector: one AVX-512 register, two AVX2, four SSE2
constexpr int64_t kMaxInputs = 16;       // inputs whose tables a block holds at most
constexpr int64_t kTableBytes = 1 << 18;  // their tables' budget: within an x86 core's L2
constexpr int64_t kMaxDim = 64;  // bases per input the kernel takes (cpu.COMPILED_MAX_BASES)
typedef float Lanes __attribute__((vector_size(kWidth * sizeof(float))));

inline Lanes load(const float* p) {  // kWidth floats at any alignment
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, const Lanes& v) { std::memcpy(p, &v, sizeof v); }

struct Inputs {  // one call's inputs: bases (batch, in, n), acts (batch, in) or null
  const float* bases;
  const float* acts;
  const float* codes;  // (K, C), times gs; C = n, or n + 1 when the codes carry the base weight
  int64_t batch, in, out, codes_n, dim, n_bases;
  float bias_scale, base_scale;
};

template <typename Index, typename Value>
struct Streams {  // per-edge numbers, (in, out); null where the layer has none
  const Index* idx;
  const Value* gains;
  const Value* biases;
  const Value* base;
};

// For rows r0..r1 of the (batch * in) rows: table[r, c] = (bases[r, :], acts[r]) . codes[c, :]
// (the activation only when the codes carry the base weight) and, where `sums` is given,
// sums[r] = sum_j bases[r, j].
KANBENCH_CLONES void table_rows(const Inputs& in, const float* __restrict__ codes_t,
                                float* __restrict__ table, float* __restrict__ sums, int64_t r0,
                                int64_t r1) {
  const int64_t K = in.codes_n, C = in.dim, n = in.n_bases;
  for (int64_t r = r0; r < r1; ++r) {
    const float* __restrict__ x = in.bases + r * n;
    float* __restrict__ t = table + r * K;
    for (int64_t c = 0; c < K; ++c) t[c] = x[0] * codes_t[c];
    for (int64_t j = 1; j < C; ++j) {
      const float xj = j < n ? x[j] : in.acts[r];
      const float* __restrict__ code = codes_t + j * K;
      for (int64_t c = 0; c < K; ++c) t[c] += xj * code[c];
    }
    if (!sums) continue;
    float sum = x[0];
    for (int64_t j = 1; j < n; ++j) sum += x[j];
    sums[r] = sum;
  }
}

// The outputs order on outputs o0..o1: acc (batch, o1 - o0) stays in L1 for small batches.
template <typename Index, typename Value, bool GAINS, bool BIASES, bool BASE>
OUTPUTS_CLONES void outputs_slice(const Inputs& in, const Streams<Index, Value>& s,
                                   const float* table, const float* sums, float* y, int64_t o0,
                                   int64_t o1) {
  const int64_t width = o1 - o0, B = in.batch;
  std::vector<float> buffer(B * width, 0.f);
  float* __restrict__ acc = buffer.data();
  for (int64_t i = 0; i < in.in; ++i) {
    const int64_t row = i * in.out + o0;
    const Index* __restrict__ idx = s.idx + row;
    const Value* __restrict__ g = GAINS ? s.gains + row : nullptr;
    const Value* __restrict__ q = BIASES ? s.biases + row : nullptr;
    const Value* __restrict__ w = BASE ? s.base + row : nullptr;
    for (int64_t b = 0; b < B; ++b) {
      const float* __restrict__ t = table + (b * in.in + i) * in.codes_n;
      const float sum = BIASES ? in.bias_scale * sums[b * in.in + i] : 0.f;
      const float act = BASE ? in.base_scale * in.acts[b * in.in + i] : 0.f;
      float* __restrict__ a = acc + b * width;
      for (int64_t o = 0; o < width; ++o) {
        float v = GAINS ? static_cast<float>(g[o]) * t[idx[o]] : t[idx[o]];
        if (BIASES) v += static_cast<float>(q[o]) * sum;
        if (BASE) v += static_cast<float>(w[o]) * act;
        a[o] += v;
      }
    }
  }
  for (int64_t b = 0; b < B; ++b)
    std::copy(acc + b * width, acc + (b + 1) * width, y + b * in.out + o0);
}

// Inputs whose tables (K, kLanes) a batch block makes at once: as many as fit kTableBytes
// (16 for K = 16, 4 for K = 256 at 64 rows), so a table row is read from cache, not memory.
int64_t block_inputs(int64_t codes_n, int64_t lanes) {
  const int64_t fit = kTableBytes / (codes_n * lanes * static_cast<int64_t>(sizeof(float)));
  return std::max<int64_t>(1, std::min(kMaxInputs, fit));
}

// The batch order on batch rows b0..b0+kLanes and outputs o0..o1, with the caller's scratch:
// table (block_inputs, K, kLanes) and acc (o1 - o0, kLanes): kLanes rows are kVectors vectors.
template <int kVectors, typename Index, typename Value, bool GAINS, bool BIASES, bool BASE>
KANBENCH_CLONES void batch_block(const Inputs& in, const Streams<Index, Value>& s, float* y,
                                 int64_t b0, int64_t o0, int64_t o1, float* __restrict__ table,
                                 float* __restrict__ acc) {
  constexpr int64_t kLanes = kWidth * kVectors;
  const int64_t rows = std::min(kLanes, in.batch - b0), K = in.codes_n, C = in.dim;
  const int64_t n = in.n_bases;
  std::fill(acc, acc + (o1 - o0) * kLanes, 0.f);
  const int64_t per_block = block_inputs(K, kLanes);
  Lanes basis[kMaxDim + 1][kVectors], sums[kMaxInputs][kVectors], acts[kMaxInputs][kVectors];
  for (int64_t i0 = 0; i0 < in.in; i0 += per_block) {
    const int64_t inputs = std::min(per_block, in.in - i0);
    for (int64_t ii = 0; ii < inputs; ++ii) {  // this input's table, (K, kLanes)
      const int64_t i = i0 + ii;
      alignas(64) float column[kMaxDim + 1][kLanes] = {};
      for (int64_t bb = 0; bb < rows; ++bb) {
        const int64_t r = (b0 + bb) * in.in + i;
        for (int64_t j = 0; j < n; ++j) column[j][bb] = in.bases[r * n + j];
        if (in.acts) column[n][bb] = in.acts[r];
      }
      for (int64_t j = 0; j <= n; ++j)
        for (int k = 0; k < kVectors; ++k) basis[j][k] = load(column[j] + k * kWidth);
      for (int k = 0; k < kVectors; ++k) {
        if (BIASES) {
          Lanes sum = basis[0][k];
          for (int64_t j = 1; j < n; ++j) sum += basis[j][k];
          sums[ii][k] = in.bias_scale * sum;
        }
        if (BASE) acts[ii][k] = in.base_scale * basis[n][k];
      }
      for (int64_t c = 0; c < K; ++c) {
        const float* __restrict__ code = in.codes + c * C;
        Lanes v[kVectors];
        for (int k = 0; k < kVectors; ++k) v[k] = code[0] * basis[0][k];
        for (int64_t j = 1; j < C; ++j) {
          const float cj = code[j];
          for (int k = 0; k < kVectors; ++k) v[k] += cj * basis[j][k];
        }
        for (int k = 0; k < kVectors; ++k) store(table + (ii * K + c) * kLanes + k * kWidth, v[k]);
      }
    }
    for (int64_t o = o0; o < o1; ++o) {
      float* a = acc + (o - o0) * kLanes;
      Lanes v[kVectors];
      for (int k = 0; k < kVectors; ++k) v[k] = load(a + k * kWidth);
      for (int64_t ii = 0; ii < inputs; ++ii) {
        const int64_t e = (i0 + ii) * in.out + o;
        const float* t = table + (ii * K + s.idx[e]) * kLanes;
        const float g = GAINS ? static_cast<float>(s.gains[e]) : 1.f;
        const float q = BIASES ? static_cast<float>(s.biases[e]) : 0.f;
        const float w = BASE ? static_cast<float>(s.base[e]) : 0.f;
        for (int k = 0; k < kVectors; ++k) {
          Lanes u = GAINS ? g * load(t + k * kWidth) : load(t + k * kWidth);
          if (BIASES) u += q * sums[ii][k];
          if (BASE) u += w * acts[ii][k];
          v[k] += u;
        }
      }
      for (int k = 0; k < kVectors; ++k) store(a + k * kWidth, v[k]);
    }
  }
  for (int64_t bb = 0; bb < rows; ++bb)
    for (int64_t o = o0; o < o1; ++o) y[(b0 + bb) * in.out + o] = acc[(o - o0) * kLanes + bb];
}

template <int kVectors, typename Index, typename Value, bool GAINS, bool BIASES, bool BASE>
void batch_order_run(const Inputs& in, const Streams<Index, Value>& s, float* y, int threads) {
  constexpr int64_t kLanes = kWidth * kVectors;
  const int64_t blocks = (in.batch + kLanes - 1) / kLanes;
  auto work = [&](int64_t b_lo, int64_t b_hi, int64_t o0, int64_t o1) {
    std::vector<float> table(block_inputs(in.codes_n, kLanes) * in.codes_n * kLanes);
    std::vector<float> acc((o1 - o0) * kLanes);
    for (int64_t block = b_lo; block < b_hi; ++block)
      batch_block<kVectors, Index, Value, GAINS, BIASES, BASE>(in, s, y, block * kLanes, o0, o1,
                                                               table.data(), acc.data());
  };
  if (blocks >= threads) {  // each thread its own batch rows
    at::parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) { work(lo, hi, 0, in.out); });
  } else {  // few rows: split the outputs (each thread makes the tables it reads)
    at::parallel_for(0, in.out, 64, [&](int64_t o0, int64_t o1) { work(0, blocks, o0, o1); });
  }
}

template <typename Index, typename Value, bool GAINS, bool BIASES, bool BASE>
void run(const Inputs& in, const Streams<Index, Value>& s, bool batch_order, float* y) {
  if (!batch_order) {  // the codes transposed, (C, K), so a table row is made along the codes
    std::vector<float> codes_t(in.dim * in.codes_n);
    for (int64_t c = 0; c < in.codes_n; ++c)
      for (int64_t j = 0; j < in.dim; ++j) codes_t[j * in.codes_n + c] = in.codes[c * in.dim + j];
    auto table = torch::empty({in.batch * in.in, in.codes_n}, torch::kFloat32);
    auto sums = torch::empty({BIASES ? in.batch * in.in : 0}, torch::kFloat32);
    float* t = table.data_ptr<float>();
    float* sum = BIASES ? sums.data_ptr<float>() : nullptr;
    at::parallel_for(0, in.batch * in.in, 64, [&](int64_t r0, int64_t r1) {
      table_rows(in, codes_t.data(), t, sum, r0, r1);
    });
    at::parallel_for(0, in.out, 256, [&](int64_t o0, int64_t o1) {
      outputs_slice<Index, Value, GAINS, BIASES, BASE>(in, s, t, sum, y, o0, o1);
    });
    return;
  }
  // The widest block (four vectors, 64 rows; then two; then one) that still gives every
  // thread a block; a batch too small for that takes one-vector blocks, split by outputs
  const int threads = at::get_num_threads();
  auto blocks = [&](int64_t lanes) { return (in.batch + lanes - 1) / lanes; };
  if (blocks(4 * kWidth) >= threads)
    batch_order_run<4, Index, Value, GAINS, BIASES, BASE>(in, s, y, threads);
  else if (blocks(2 * kWidth) >= threads)
    batch_order_run<2, Index, Value, GAINS, BIASES, BASE>(in, s, y, threads);
  else
    batch_order_run<1, Index, Value, GAINS, BIASES, BASE>(in, s, y, threads);
}

template <typename Index, typename Value>
void dispatch_streams(const Inputs& in, const Streams<Index, Value>& s, bool batch_order,
                      float* y) {
  const bool g = s.gains, q = s.biases, w = s.base;
#define KANBENCH_RUN(G, Q, W) run<Index, Value, G, Q, W>(in, s, batch_order, y)
  if (g && q && w) KANBENCH_RUN(true, true, true);
  else if (!g && !q && !w) KANBENCH_RUN(false, false, false);
  else if (g && q) KANBENCH_RUN(true, true, false);
  else if (w && !g && !q) KANBENCH_RUN(false, false, true);
  else TORCH_CHECK(false, "gains and biases come together");
#undef KANBENCH_RUN
}

template <typename T>
const T* data_or_null(const c10::optional<torch::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

template <typename Index>
void dispatch_values(const Inputs& in, const torch::Tensor& idx,
                     const c10::optional<torch::Tensor>& gains,
                     const c10::optional<torch::Tensor>& biases,
                     const c10::optional<torch::Tensor>& base, bool batch_order, float* y) {
  const bool int8 = (gains && gains->scalar_type() == torch::kInt8) ||
                    (base && base->scalar_type() == torch::kInt8);
  if (int8) {
    Streams<Index, int8_t> s{idx.data_ptr<Index>(), data_or_null<int8_t>(gains),
                             data_or_null<int8_t>(biases), data_or_null<int8_t>(base)};
    dispatch_streams(in, s, batch_order, y);
  } else {
    Streams<Index, float> s{idx.data_ptr<Index>(), data_or_null<float>(gains),
                            data_or_null<float>(biases), data_or_null<float>(base)};
    dispatch_streams(in, s, batch_order, y);
  }
}

void check(const c10::optional<torch::Tensor>& t, const torch::Tensor& idx, const char* name,
           c10::ScalarType dtype) {
  if (!t) return;
  TORCH_CHECK(t->is_contiguous() && t->sizes() == idx.sizes(), name, " must be (in, out)");
  TORCH_CHECK(t->scalar_type() == dtype, name, " must be int8 or float32, all of one dtype");
}

void check_rows(const c10::optional<torch::Tensor>& t, const torch::Tensor& bases,
                const char* name) {
  if (!t) return;
  TORCH_CHECK(t->dim() == 2 && t->size(0) == bases.size(0) && t->size(1) == bases.size(1) &&
              t->is_contiguous() && t->scalar_type() == torch::kFloat32,
              name, " must be contiguous float32 (batch, in)");
}

}  // namespace

// bases (batch, in, n) f32; acts (batch, in) f32 or None; codes (K, C) f32 with C = n, or
// n + 1 when the codes carry the base weight (then acts is the last basis); idx (in, out)
// uint8/int32; gains, biases, base (in, out) int8/f32 or None. -> (batch, out)
torch::Tensor forward(torch::Tensor bases, c10::optional<torch::Tensor> acts,
                      torch::Tensor codes, torch::Tensor idx,
                      c10::optional<torch::Tensor> gains, c10::optional<torch::Tensor> biases,
                      c10::optional<torch::Tensor> base, double gain_scale, double bias_scale,
                      double base_scale, bool batch_order) {
  TORCH_CHECK(bases.dim() == 3 && bases.scalar_type() == torch::kFloat32 &&
              bases.is_contiguous() && bases.size(2) > 0,
              "bases must be contiguous float32 (batch, in, n)");
  const int64_t n = bases.size(2);
  TORCH_CHECK(codes.dim() == 2 && codes.size(0) > 0 && codes.is_contiguous() &&
              codes.scalar_type() == torch::kFloat32 &&
              (codes.size(1) == n || codes.size(1) == n + 1),
              "codes must be contiguous float32 (K, n) or (K, n + 1)");
  const bool carry = codes.size(1) == n + 1;
  TORCH_CHECK(n <= kMaxDim, "the kernel takes at most ", kMaxDim, " bases");
  TORCH_CHECK(idx.dim() == 2 && idx.size(0) == bases.size(1) && idx.is_contiguous(),
              "indices must be contiguous (in, out)");
  TORCH_CHECK(!carry || !base, "base weights come in the codes or per edge, not both");
  TORCH_CHECK(!(carry || base) || acts, "base weights need the activations");
  const auto dtype = gains ? gains->scalar_type() : base ? base->scalar_type() : torch::kFloat32;
  TORCH_CHECK(!gains == !biases, "gains and biases come together");
  check(gains, idx, "gains", dtype);
  check(biases, idx, "biases", dtype);
  check(base, idx, "base", dtype);
  check_rows(acts, bases, "acts");
  auto scaled = (codes * gain_scale).contiguous();                   // (K, C)
  auto y = torch::empty({bases.size(0), idx.size(1)}, bases.options());
  const Inputs in{bases.data_ptr<float>(), data_or_null<float>(acts), scaled.data_ptr<float>(),
                  bases.size(0), bases.size(1), idx.size(1), codes.size(0), codes.size(1), n,
                  static_cast<float>(bias_scale), static_cast<float>(base_scale)};
  if (in.batch == 0 || in.out == 0) return y.zero_();
  if (idx.scalar_type() == torch::kUInt8) {
    dispatch_values<uint8_t>(in, idx, gains, biases, base, batch_order, y.data_ptr<float>());
  } else {
    TORCH_CHECK(idx.scalar_type() == torch::kInt32, "indices must be uint8 or int32");
    dispatch_values<int32_t>(in, idx, gains, biases, base, batch_order, y.data_ptr<float>());
  }
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "codebook KAN forward, outputs or batch order (CPU)");
}
