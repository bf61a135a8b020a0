// The table-and-gather order of the codebook KAN forward (see methods/layers/kernels/__init__.py):
//   y[b, o] = gs * sum_i g[i, o] * T[b, i, idx[i, o]]
//           + bs * sum_i q[i, o] * S[b, i] + ws * sum_i w[i, o] * A[b, i]
// T (batch, in, K) is the per-input table of basis values times codes, small enough to stay
// in cache; idx, g, q, w are (in, out), streamed once per row along the outputs, so each
// output slice's three accumulators stay in L1. g, q, w are int8 (scaled) or float32.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <vector>

namespace {

// One pass over the outputs of a slice per input row, reading only the streams present
// (compile-time flags), so the loop has no branches and the compiler can vectorize it.
template <typename Index, typename Value, bool GAINS, bool BIASES, bool BASE>
void gather_slice(const float* __restrict__ table, const float* __restrict__ sums,
                  const float* __restrict__ acts, const Index* __restrict__ idx,
                  const Value* __restrict__ gains, const Value* __restrict__ biases,
                  const Value* __restrict__ base, float gain_scale, float bias_scale,
                  float base_scale, float* __restrict__ y, int64_t batch, int64_t in,
                  int64_t out, int64_t codes, int64_t o0, int64_t o1) {
  const int64_t width = o1 - o0;
  std::vector<float> acc_g(width), acc_b(width), acc_w(width);
  float* __restrict__ g_acc = acc_g.data();
  float* __restrict__ b_acc = acc_b.data();
  float* __restrict__ w_acc = acc_w.data();
  for (int64_t b = 0; b < batch; ++b) {
    std::fill(acc_g.begin(), acc_g.end(), 0.f);
    std::fill(acc_b.begin(), acc_b.end(), 0.f);
    std::fill(acc_w.begin(), acc_w.end(), 0.f);
    for (int64_t i = 0; i < in; ++i) {
      const float* __restrict__ t = table + (b * in + i) * codes;     // (K,) this input's row
      const int64_t row = i * out + o0;
      const float s = BIASES ? sums[b * in + i] : 0.f;
      const float a = BASE ? acts[b * in + i] : 0.f;
      for (int64_t o = 0; o < width; ++o) {
        const float picked = t[idx[row + o]];
        g_acc[o] += GAINS ? static_cast<float>(gains[row + o]) * picked : picked;
        if (BIASES) b_acc[o] += static_cast<float>(biases[row + o]) * s;
        if (BASE) w_acc[o] += static_cast<float>(base[row + o]) * a;
      }
    }
    float* out_row = y + b * out + o0;
    for (int64_t o = 0; o < width; ++o)
      out_row[o] = gain_scale * g_acc[o] + bias_scale * b_acc[o] + base_scale * w_acc[o];
  }
}

template <typename Index, typename Value>
void gather_rows(const float* table, const float* sums, const float* acts, const Index* idx,
                 const Value* gains, const Value* biases, const Value* base, float gain_scale,
                 float bias_scale, float base_scale, float* y, int64_t batch, int64_t in,
                 int64_t out, int64_t codes) {
  at::parallel_for(0, out, 256, [&](int64_t o0, int64_t o1) {
#define KANBENCH_SLICE(G, Q, W)                                                             \
  gather_slice<Index, Value, G, Q, W>(table, sums, acts, idx, gains, biases, base, gain_scale, \
                                      bias_scale, base_scale, y, batch, in, out, codes, o0, o1)
    if (gains && biases && base) KANBENCH_SLICE(true, true, true);
    else if (!gains && !biases && !base) KANBENCH_SLICE(false, false, false);
    else if (gains && biases) KANBENCH_SLICE(true, true, false);
    else if (base) KANBENCH_SLICE(false, false, true);
    else TORCH_CHECK(false, "gains and biases come together");
#undef KANBENCH_SLICE
  });
}

template <typename T>
const T* data_or_null(const c10::optional<torch::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

template <typename Index>
void dispatch_values(const torch::Tensor& table, const c10::optional<torch::Tensor>& sums,
                     const c10::optional<torch::Tensor>& acts, const torch::Tensor& idx,
                     const c10::optional<torch::Tensor>& gains,
                     const c10::optional<torch::Tensor>& biases,
                     const c10::optional<torch::Tensor>& base, double gs, double bs, double ws,
                     torch::Tensor& y) {
  const int64_t batch = table.size(0), in = table.size(1), codes = table.size(2);
  const int64_t out = idx.size(1);
  const bool int8 = (gains && gains->scalar_type() == torch::kInt8) ||
                    (base && base->scalar_type() == torch::kInt8);
  if (int8) {
    gather_rows<Index, int8_t>(table.data_ptr<float>(), data_or_null<float>(sums),
                               data_or_null<float>(acts), idx.data_ptr<Index>(),
                               data_or_null<int8_t>(gains), data_or_null<int8_t>(biases),
                               data_or_null<int8_t>(base), gs, bs, ws, y.data_ptr<float>(),
                               batch, in, out, codes);
  } else {
    gather_rows<Index, float>(table.data_ptr<float>(), data_or_null<float>(sums),
                              data_or_null<float>(acts), idx.data_ptr<Index>(),
                              data_or_null<float>(gains), data_or_null<float>(biases),
                              data_or_null<float>(base), gs, bs, ws, y.data_ptr<float>(),
                              batch, in, out, codes);
  }
}

void check(const c10::optional<torch::Tensor>& t, const torch::Tensor& idx, const char* name) {
  if (!t) return;
  TORCH_CHECK(t->is_contiguous() && t->sizes() == idx.sizes(), name, " must be (in, out)");
  TORCH_CHECK(t->scalar_type() == torch::kInt8 || t->scalar_type() == torch::kFloat32, name,
              " must be int8 or float32");
}

}  // namespace

// table (batch, in, K) f32; sums, acts (batch, in) f32 or None; idx (in, out) uint8/int32;
// gains, biases, base (in, out) int8/f32 or None, all of one dtype. Returns (batch, out).
torch::Tensor gather(torch::Tensor table, c10::optional<torch::Tensor> sums,
                     c10::optional<torch::Tensor> acts, torch::Tensor idx,
                     c10::optional<torch::Tensor> gains, c10::optional<torch::Tensor> biases,
                     c10::optional<torch::Tensor> base, double gain_scale, double bias_scale,
                     double base_scale) {
  TORCH_CHECK(table.dim() == 3 && table.scalar_type() == torch::kFloat32 &&
              table.is_contiguous(), "table must be contiguous float32 (batch, in, K)");
  TORCH_CHECK(idx.dim() == 2 && idx.size(0) == table.size(1) && idx.is_contiguous(),
              "indices must be contiguous (in, out)");
  TORCH_CHECK(!biases || sums, "biases need the basis sums");
  TORCH_CHECK(!base || acts, "base weights need the activations");
  check(gains, idx, "gains");
  check(biases, idx, "biases");
  check(base, idx, "base");
  auto y = torch::empty({table.size(0), idx.size(1)}, table.options());
  if (idx.scalar_type() == torch::kUInt8) {
    dispatch_values<uint8_t>(table, sums, acts, idx, gains, biases, base, gain_scale,
                             bias_scale, base_scale, y);
  } else {
    TORCH_CHECK(idx.scalar_type() == torch::kInt32, "indices must be uint8 or int32");
    dispatch_values<int32_t>(table, sums, acts, idx, gains, biases, base, gain_scale,
                             bias_scale, base_scale, y);
  }
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gather", &gather, "codebook KAN table-and-gather forward (CPU, OpenMP)");
}
