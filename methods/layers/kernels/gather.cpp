// The compressed forward of a codebook KAN layer (see methods/layers/kernels/__init__.py):
//   y[b, o] = sum_i  g[i, o] * T[b, i, idx[i, o]] + q[i, o] * S[b, i] + w[i, o] * A[b, i]
//   T[b, i, c] = gs * sum_j bases[b, i, j] * codes[c, j]
// with S the basis sums times the bias scale bs, A the activations times the base scale ws,
// and g, q, w the int8 (scaled) or float32 per-edge gains, biases and base weights, streamed
// (in, out). Two orders compute it, both without rebuilding a weight:
//   outputs  small batches: the inputs in kChunks chunks, one thread per chunk at a time;
//            per input the tables T[:, i, :] (batch, K) are made in L1, then one pass along
//            the outputs reads each edge's index and numbers once (converted once) and adds
//            its gathered table entry to every batch row's partial sum; the chunks' partial
//            sums are added in chunk order at the end, so a result does not depend on the
//            thread count. Where the CPU has AVX-512 the pass gathers 16 edges per
//            instruction (edges_avx512); elsewhere it is plain C++ (edges_portable)
//   batch    larger batches: blocks of kLanes batch rows; per block of inputs the tables
//            T (inputs, K, kLanes) are made in cache and every edge adds one scaled
//            table row to its output's kLanes accumulators (vectorized over the batch), so
//            the work per edge and batch row is three multiply-adds, against the dense
//            layer's G + k + 1, and nothing of batch x in x K size reaches memory
// The two orders add the same terms, the outputs order in chunks: they agree to rounding.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define KANBENCH_HAS_AVX512_PATH 1
#define KANBENCH_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#endif

// Compiled for AVX-512 (x86-64-v4), AVX2 and baseline x86-64, picked at run time by the CPU
// (GCC function multiversioning). The v4 version lets GCC contract a * b + c into one fused
// multiply-add, which AVX2 alone and the baseline lack, so a result's last bits depend on
// the CPU. The portable edge loop keeps to AVX2 (PORTABLE_CLONES): as compiler-vectorized
// AVX-512 code its per-edge scalar table loads ran slower on the Xeon this was tuned on;
// where the CPU has AVX-512 the outputs order uses edges_avx512's gathers instead.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define KANBENCH_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#define PORTABLE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define KANBENCH_CLONES
#define PORTABLE_CLONES
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

constexpr int64_t kChunks = 16;  // the outputs order's input chunks (partial sums)

// Input i's tables for every batch row: table (batch, K), table[b, c] = (bases[b, i, :],
// acts[b, i]) . codes[c, :] (the activation only when the codes carry the base weight), with
// codes_t the codes transposed (C, K); sums[b] = bs * sum_j bases[b, i, j], acts_out[b] =
// ws * acts[b, i].
KANBENCH_CLONES void input_tables(const Inputs& in, const float* __restrict__ codes_t,
                                  int64_t i, float* __restrict__ table,
                                  float* __restrict__ sums, float* __restrict__ acts_out) {
  const int64_t K = in.codes_n, C = in.dim, n = in.n_bases;
  for (int64_t b = 0; b < in.batch; ++b) {
    const int64_t r = b * in.in + i;
    const float* __restrict__ x = in.bases + r * n;
    float xs[kMaxDim + 1];  // this row's bases, then act(x) when the codes carry the base
    for (int64_t j = 0; j < C; ++j) xs[j] = j < n ? x[j] : in.acts[r];
    float* __restrict__ t = table + b * K;
    int64_t c = 0;
    for (; c + kWidth <= K; c += kWidth) {  // kWidth codes in one vector, summed over j
      Lanes v = xs[0] * load(codes_t + c);
      for (int64_t j = 1; j < C; ++j) v += xs[j] * load(codes_t + j * K + c);
      store(t + c, v);
    }
    for (; c < K; ++c) {
      float v = xs[0] * codes_t[c];
      for (int64_t j = 1; j < C; ++j) v += xs[j] * codes_t[j * K + c];
      t[c] = v;
    }
    float sum = x[0];
    for (int64_t j = 1; j < n; ++j) sum += x[j];
    sums[b] = in.bias_scale * sum;
    acts_out[b] = in.acts ? in.base_scale * in.acts[r] : 0.f;
  }
}

// Input i's edges, portable: acc (batch, out) += every edge's term for every batch row.
template <typename Index, typename Value, bool GAINS, bool BIASES, bool BASE>
PORTABLE_CLONES void edges_portable(const Inputs& in, const Streams<Index, Value>& s, int64_t i,
                                   const float* __restrict__ table,
                                   const float* __restrict__ sums,
                                   const float* __restrict__ acts, float* __restrict__ acc) {
  const int64_t out = in.out, e0 = i * out;
  const Index* __restrict__ idx = s.idx + e0;
  const Value* __restrict__ g = GAINS ? s.gains + e0 : nullptr;
  const Value* __restrict__ q = BIASES ? s.biases + e0 : nullptr;
  const Value* __restrict__ w = BASE ? s.base + e0 : nullptr;
  for (int64_t b = 0; b < in.batch; ++b) {
    const float* __restrict__ t = table + b * in.codes_n;
    const float sum = sums[b], act = acts[b];
    float* __restrict__ a = acc + b * out;
    for (int64_t o = 0; o < out; ++o) {
      float v = GAINS ? static_cast<float>(g[o]) * t[idx[o]] : t[idx[o]];
      if (BIASES) v += static_cast<float>(q[o]) * sum;
      if (BASE) v += static_cast<float>(w[o]) * act;
      a[o] += v;
    }
  }
}

#ifdef KANBENCH_HAS_AVX512_PATH
// 16 edges' indices as int32 and numbers as float32 (lanes outside `m` zero)
KANBENCH_AVX512 inline __m512i load16(const uint8_t* p, __mmask16 m) {
  return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p));
}
KANBENCH_AVX512 inline __m512i load16(const int32_t* p, __mmask16 m) {
  return _mm512_maskz_loadu_epi32(m, p);
}
KANBENCH_AVX512 inline __m512 load16(const int8_t* p, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}
KANBENCH_AVX512 inline __m512 load16(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}

// Input i's edges with AVX-512, 16 outputs at a time: their indices and numbers are loaded
// and converted once, then for every batch row one gather from the row's table and up to
// three fused multiply-adds into the row's partial sums.
template <typename Index, typename Value, bool GAINS, bool BIASES, bool BASE>
KANBENCH_AVX512 void edges_avx512(const Inputs& in, const Streams<Index, Value>& s, int64_t i,
                                  const float* table, const float* sums, const float* acts,
                                  float* acc) {
  const int64_t e0 = i * in.out;
  for (int64_t o = 0; o < in.out; o += 16) {
    const __mmask16 m = in.out - o >= 16 ? 0xFFFF : (1u << (in.out - o)) - 1;
    const __m512i ix = load16(s.idx + e0 + o, m);
    const __m512 g = GAINS ? load16(s.gains + e0 + o, m) : _mm512_setzero_ps();
    const __m512 q = BIASES ? load16(s.biases + e0 + o, m) : _mm512_setzero_ps();
    const __m512 w = BASE ? load16(s.base + e0 + o, m) : _mm512_setzero_ps();
    for (int64_t b = 0; b < in.batch; ++b) {
      float* a = acc + b * in.out + o;
      const __m512 t = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ix,
                                                table + b * in.codes_n, 4);
      __m512 v = _mm512_maskz_loadu_ps(m, a);
      v = GAINS ? _mm512_fmadd_ps(g, t, v) : _mm512_add_ps(v, t);
      if (BIASES) v = _mm512_fmadd_ps(q, _mm512_set1_ps(sums[b]), v);
      if (BASE) v = _mm512_fmadd_ps(w, _mm512_set1_ps(acts[b]), v);
      _mm512_mask_storeu_ps(a, m, v);
    }
  }
}

bool cpu_has_avx512() {  // asked once per process
  static const bool has = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return has;
}
#else
bool cpu_has_avx512() { return false; }
#endif

// The outputs order (see the top): every chunk's partial sums (batch, out), then y their sum.
template <typename Index, typename Value, bool GAINS, bool BIASES, bool BASE>
void outputs_order(const Inputs& in, const Streams<Index, Value>& s, float* y, bool avx512) {
  const int64_t K = in.codes_n, B = in.batch, size = B * in.out;
  std::vector<float> codes_t(in.dim * K);  // (C, K): a table row is made along the codes
  for (int64_t c = 0; c < K; ++c)
    for (int64_t j = 0; j < in.dim; ++j) codes_t[j * K + c] = in.codes[c * in.dim + j];
  const int64_t chunks = std::min(kChunks, in.in);
  std::vector<float> partial(chunks * size, 0.f);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> table(B * K), sums(B), acts(B);
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      float* acc = partial.data() + chunk * size;
      for (int64_t i = in.in * chunk / chunks; i < in.in * (chunk + 1) / chunks; ++i) {
        input_tables(in, codes_t.data(), i, table.data(), sums.data(), acts.data());
#ifdef KANBENCH_HAS_AVX512_PATH
        if (avx512) {
          edges_avx512<Index, Value, GAINS, BIASES, BASE>(in, s, i, table.data(), sums.data(),
                                                          acts.data(), acc);
          continue;
        }
#endif
        edges_portable<Index, Value, GAINS, BIASES, BASE>(in, s, i, table.data(), sums.data(),
                                                          acts.data(), acc);
      }
    }
  });
  at::parallel_for(0, size, 4096, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      float v = partial[e];
      for (int64_t chunk = 1; chunk < chunks; ++chunk) v += partial[chunk * size + e];
      y[e] = v;
    }
  });
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
void run(const Inputs& in, const Streams<Index, Value>& s, bool batch_order, bool avx512,
         float* y) {
  if (!batch_order) return outputs_order<Index, Value, GAINS, BIASES, BASE>(in, s, y, avx512);
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
                      bool avx512, float* y) {
  const bool g = s.gains, q = s.biases, w = s.base;
#define KANBENCH_RUN(G, Q, W) run<Index, Value, G, Q, W>(in, s, batch_order, avx512, y)
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
                     const c10::optional<torch::Tensor>& base, bool batch_order, bool avx512,
                     float* y) {
  const bool int8 = (gains && gains->scalar_type() == torch::kInt8) ||
                    (base && base->scalar_type() == torch::kInt8);
  if (int8) {
    Streams<Index, int8_t> s{idx.data_ptr<Index>(), data_or_null<int8_t>(gains),
                             data_or_null<int8_t>(biases), data_or_null<int8_t>(base)};
    dispatch_streams(in, s, batch_order, avx512, y);
  } else {
    Streams<Index, float> s{idx.data_ptr<Index>(), data_or_null<float>(gains),
                            data_or_null<float>(biases), data_or_null<float>(base)};
    dispatch_streams(in, s, batch_order, avx512, y);
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
// uint8/int32; gains, biases, base (in, out) int8/f32 or None; portable: the outputs order
// without AVX-512 even where the CPU has it (tests). -> (batch, out)
torch::Tensor forward(torch::Tensor bases, c10::optional<torch::Tensor> acts,
                      torch::Tensor codes, torch::Tensor idx,
                      c10::optional<torch::Tensor> gains, c10::optional<torch::Tensor> biases,
                      c10::optional<torch::Tensor> base, double gain_scale, double bias_scale,
                      double base_scale, bool batch_order, bool portable) {
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
  const bool avx512 = !portable && cpu_has_avx512();
  if (idx.scalar_type() == torch::kUInt8) {
    dispatch_values<uint8_t>(in, idx, gains, biases, base, batch_order, avx512,
                             y.data_ptr<float>());
  } else {
    TORCH_CHECK(idx.scalar_type() == torch::kInt32, "indices must be uint8 or int32");
    dispatch_values<int32_t>(in, idx, gains, biases, base, batch_order, avx512,
                             y.data_ptr<float>());
  }
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "codebook KAN forward, outputs or batch order (CPU)");
}
