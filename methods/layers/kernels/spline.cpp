// The spline term of a B-spline KAN layer on a uniform grid, forward and backward, computing
// only the k+1 non-zero bases of each input (methods/splines.py derives them):
//   y[b, o] = sum_i sum_r v_r(x[b, i]) * W[i, first(x[b, i]) + r, o]
// with W the coefficients laid out (in, G+k, out), so each (input, basis) row streams the
// outputs contiguously, and v_r the r-th local basis: a degree-k polynomial of the input's
// fraction f in its knot interval, evaluated by Horner's rule from `poly` (k+1, k+1), row r
// holding ascending powers. A basis whose index falls outside 0..G+k-1 is zero; a
// non-finite input makes its outputs NaN, as in the PyTorch path.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

// The two loops are compiled twice, for AVX2 and for the baseline x86-64 (SSE2), and the
// loader picks one at run time by the CPU (GCC's function multiversioning), so one build
// runs on every x86-64 node. No FMA: both versions round every product and sum alike, so
// a result does not depend on the CPU it ran on.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define KANBENCH_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define KANBENCH_CLONES
#endif

namespace {

constexpr int kMaxOrder = 15;  // k + 1 values per input live in a fixed array

struct Grid {
  double inv_h, offset;  // u = x * inv_h + offset: x lies in knot interval floor(u)
  int64_t k, n;          // spline order, G + k bases
  std::vector<double> poly, slope;  // (k+1, k+1) value and (k+1, k) derivative coefficients
};

// The k+1 local values (and derivatives, when `dvals`) of x, and the index of the first
// basis; false when x is not finite. All values are zero when x is far outside the grid.
template <typename scalar_t>
inline bool local_bases(scalar_t x, const Grid& g, scalar_t* vals, scalar_t* dvals,
                        int64_t& first) {
  const int64_t k = g.k;
  if (!std::isfinite(static_cast<double>(x))) return false;
  const scalar_t u = x * static_cast<scalar_t>(g.inv_h) + static_cast<scalar_t>(g.offset);
  if (!(u > -2 && u < static_cast<scalar_t>(g.n + k + 2))) {  // no basis reaches it
    first = 0;
    for (int64_t r = 0; r <= k; ++r) {
      vals[r] = 0;
      if (dvals) dvals[r] = 0;
    }
    return true;
  }
  const scalar_t m = std::floor(u);
  const scalar_t f = u - m;
  first = static_cast<int64_t>(m) - k;
  for (int64_t r = 0; r <= k; ++r) {
    const bool valid = first + r >= 0 && first + r < g.n;
    const double* p = g.poly.data() + r * (k + 1);
    scalar_t v = static_cast<scalar_t>(p[k]);
    for (int64_t d = k - 1; d >= 0; --d) v = v * f + static_cast<scalar_t>(p[d]);
    vals[r] = valid ? v : scalar_t(0);
    if (dvals) {
      scalar_t dv = 0;
      if (k > 0) {
        const double* s = g.slope.data() + r * k;
        dv = static_cast<scalar_t>(s[k - 1]);
        for (int64_t d = k - 2; d >= 0; --d) dv = dv * f + static_cast<scalar_t>(s[d]);
      }
      dvals[r] = valid ? dv : scalar_t(0);
    }
  }
  return true;
}

Grid make_grid(const torch::Tensor& poly, double inv_h, double offset, int64_t n) {
  TORCH_CHECK(poly.dim() == 2 && poly.size(0) == poly.size(1) && poly.size(0) <= kMaxOrder + 1,
              "poly must be (k+1, k+1) with k <= ", kMaxOrder);
  auto p = poly.to(torch::kFloat64).contiguous();
  Grid g{inv_h, offset, poly.size(0) - 1, n, {}, {}};
  g.poly.assign(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
  for (int64_t r = 0; r <= g.k; ++r)  // d/dx of f^d is d f^(d-1) / h
    for (int64_t d = 1; d <= g.k; ++d) g.slope.push_back(g.poly[r * (g.k + 1) + d] * d * inv_h);
  return g;
}

// Rows are taken in blocks whose outputs (block x out) stay in L1 while each input's
// (G+k, out) coefficients stream past once per block, not once per row: coefficients of a
// wide layer (784 x 8 x 64 floats: 1.6 MB) would otherwise be re-read from L3 for every row.
// Each y[b, o] still sums over inputs in order, so the blocking changes no bit.
constexpr int64_t kBlockBytes = 16384;

template <typename scalar_t>
KANBENCH_CLONES void forward_rows(const scalar_t* x, const scalar_t* w, scalar_t* y,
                                  const Grid& g, int64_t in, int64_t out, int64_t b0,
                                  int64_t b1) {
  scalar_t vals[kMaxOrder + 1];
  const int64_t block = std::max<int64_t>(1, kBlockBytes / (out * sizeof(scalar_t)));
  for (int64_t bb = b0; bb < b1; bb += block) {
    const int64_t be = std::min(b1, bb + block);
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t b = bb; b < be; ++b) {
        scalar_t* __restrict__ row = y + b * out;
        int64_t first;
        if (!local_bases(x[b * in + i], g, vals, static_cast<scalar_t*>(nullptr), first)) {
          for (int64_t o = 0; o < out; ++o) row[o] = NAN;  // stays NaN: later terms add to it
          continue;
        }
        for (int64_t r = 0; r <= g.k; ++r) {
          const scalar_t v = vals[r];
          if (v == 0) continue;
          const scalar_t* __restrict__ wr = w + ((i * g.n) + first + r) * out;
          for (int64_t o = 0; o < out; ++o) row[o] += v * wr[o];
        }
      }
    }
  }
}

// sum_o a[o] b[o] in kLanes running sums, added in a fixed order at the end: the compiler
// vectorizes the lanes (a single running sum is a serial chain of dependent adds, since
// without -ffast-math it may not reorder them), and the result is the same on every CPU.
constexpr int64_t kLanes = 8;

template <typename scalar_t>
inline scalar_t dot(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t n) {
  scalar_t lanes[kLanes] = {};
  int64_t o = 0;
  for (; o + kLanes <= n; o += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += a[o + l] * b[o + l];
  scalar_t sum = 0;
  for (; o < n; ++o) sum += a[o] * b[o];
  for (int64_t l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

template <typename scalar_t>
KANBENCH_CLONES void backward_inputs(const scalar_t* x, const scalar_t* w, const scalar_t* gy, scalar_t* gx,
                     scalar_t* gw, const Grid& g, int64_t batch, int64_t in, int64_t out,
                     int64_t i0, int64_t i1) {
  scalar_t vals[kMaxOrder + 1], dvals[kMaxOrder + 1];
  for (int64_t i = i0; i < i1; ++i) {
    scalar_t* wgrad = gw ? gw + i * g.n * out : nullptr;             // (G+k, out) of input i
    for (int64_t b = 0; b < batch; ++b) {
      const scalar_t* __restrict__ grow = gy + b * out;
      int64_t first;
      if (!local_bases(x[b * in + i], g, vals, dvals, first)) {
        if (gx) gx[b * in + i] = NAN;
        if (wgrad)
          for (int64_t j = 0; j < g.n * out; ++j) wgrad[j] = NAN;
        continue;
      }
      scalar_t dx = 0;
      for (int64_t r = 0; r <= g.k; ++r) {
        if (vals[r] == 0 && dvals[r] == 0) continue;
        const int64_t row = (i * g.n + first + r) * out;
        if (wgrad) {
          scalar_t* __restrict__ gr = gw + row;
          const scalar_t v = vals[r];
          for (int64_t o = 0; o < out; ++o) gr[o] += v * grow[o];
        }
        if (gx) dx += dvals[r] * dot(w + row, grow, out);
      }
      if (gx) gx[b * in + i] = dx;
    }
  }
}

// The bases of a block of inputs at a time, each step a loop over the block that the
// compiler vectorizes (one input at a time, the k+1 short Horner chains run serially).
constexpr int64_t kBlock = 64;

// Where each input of a block lies: frac[j] its fraction in its knot interval, first[j] the
// index of its first local basis, state[j] 0 within reach of a basis, 1 far outside the
// grid (every basis zero), 2 not finite. Same arithmetic, so the same bits, as local_bases.
template <typename scalar_t>
inline void locate_block(const scalar_t* x, int64_t count, const Grid& g, scalar_t* frac,
                         int64_t* first, uint8_t* state) {
  const scalar_t inv_h = static_cast<scalar_t>(g.inv_h), offset = static_cast<scalar_t>(g.offset);
  const scalar_t hi = static_cast<scalar_t>(g.n + g.k + 2);
  for (int64_t j = 0; j < count; ++j) {
    const scalar_t u = x[j] * inv_h + offset;
    const bool inside = u > -2 && u < hi;  // false for NaN
    const scalar_t m = std::floor(inside ? u : scalar_t(0));
    frac[j] = (inside ? u : scalar_t(0)) - m;
    first[j] = static_cast<int64_t>(m) - g.k;
    state[j] = inside ? 0 : (std::isfinite(static_cast<double>(x[j])) ? 1 : 2);
  }
}

// out[j] = sum_d c[d] frac[j]^d for d = 0..degree, by Horner's rule.
template <typename scalar_t>
inline void horner_block(const double* c, int64_t degree, const scalar_t* frac, int64_t count,
                         scalar_t* out) {
  for (int64_t j = 0; j < count; ++j) out[j] = static_cast<scalar_t>(c[degree]);
  for (int64_t d = degree - 1; d >= 0; --d) {
    const scalar_t cd = static_cast<scalar_t>(c[d]);
    for (int64_t j = 0; j < count; ++j) out[j] = out[j] * frac[j] + cd;
  }
}

// Every basis of every input, x (batch * in) -> out (batch * in, n): the k+1 local values in
// place and zeros elsewhere (NaN throughout for a non-finite input), for a BLAS product.
template <typename scalar_t>
KANBENCH_CLONES void bases_rows(const scalar_t* x, scalar_t* out, const Grid& g, int64_t j0,
                                int64_t j1) {
  scalar_t frac[kBlock], vals[(kMaxOrder + 1) * kBlock];
  int64_t first[kBlock];
  uint8_t state[kBlock];
  for (int64_t jb = j0; jb < j1; jb += kBlock) {
    const int64_t count = std::min(kBlock, j1 - jb);
    locate_block(x + jb, count, g, frac, first, state);
    for (int64_t r = 0; r <= g.k; ++r)
      horner_block(g.poly.data() + r * (g.k + 1), g.k, frac, count, vals + r * kBlock);
    for (int64_t j = 0; j < count; ++j) {
      scalar_t* dst = out + (jb + j) * g.n;
      std::fill(dst, dst + g.n, state[j] == 2 ? scalar_t(NAN) : scalar_t(0));
      if (state[j] != 0) continue;
      for (int64_t r = 0; r <= g.k; ++r) {
        const int64_t index = first[j] + r;
        if (index >= 0 && index < g.n) dst[index] = vals[r * kBlock + j];
      }
    }
  }
}

// The input gradient from back = grad_y @ W^T: grad_x[j] = sum_r v'_r(x[j]) back[j, first + r],
// back (batch * in, n), x and grad_x (batch * in).
template <typename scalar_t>
KANBENCH_CLONES void input_grad_rows(const scalar_t* x, const scalar_t* back, scalar_t* gx,
                                     const Grid& g, int64_t j0, int64_t j1) {
  scalar_t frac[kBlock], slopes[(kMaxOrder + 1) * kBlock];
  int64_t first[kBlock];
  uint8_t state[kBlock];
  for (int64_t jb = j0; jb < j1; jb += kBlock) {
    const int64_t count = std::min(kBlock, j1 - jb);
    locate_block(x + jb, count, g, frac, first, state);
    for (int64_t r = 0; r <= g.k && g.k > 0; ++r)
      horner_block(g.slope.data() + r * g.k, g.k - 1, frac, count, slopes + r * kBlock);
    for (int64_t j = 0; j < count; ++j) {
      const scalar_t* src = back + (jb + j) * g.n;
      scalar_t sum = state[j] == 2 ? scalar_t(NAN) : scalar_t(0);
      for (int64_t r = 0; r <= g.k && g.k > 0 && state[j] == 0; ++r) {
        const int64_t index = first[j] + r;
        if (index >= 0 && index < g.n) sum += slopes[r * kBlock + j] * src[index];
      }
      gx[jb + j] = sum;
    }
  }
}

void check_inputs(const torch::Tensor& x, const torch::Tensor& w) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 3 && x.size(1) == w.size(0),
              "x must be (batch, in) and w (in, G+k, out)");
  TORCH_CHECK(x.is_contiguous() && w.is_contiguous() && x.scalar_type() == w.scalar_type(),
              "x and w must be contiguous and of one dtype");
}

}  // namespace

// x (batch, in), w (in, G+k, out) float32 or float64 -> y (batch, out).
torch::Tensor spline_forward(torch::Tensor x, torch::Tensor w, torch::Tensor poly, double inv_h,
                             double offset) {
  check_inputs(x, w);
  const int64_t batch = x.size(0), in = x.size(1), out = w.size(2);
  const Grid g = make_grid(poly, inv_h, offset, w.size(1));
  auto y = torch::zeros({batch, out}, x.options());
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, in * out));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spline_forward", [&] {
    at::parallel_for(0, batch, grain, [&](int64_t b0, int64_t b1) {
      forward_rows<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                             y.data_ptr<scalar_t>(), g, in, out, b0, b1);
    });
  });
  return y;
}

// grad_y (batch, out) -> [grad_x (batch, in) or empty, grad_w (in, G+k, out) or empty].
std::vector<torch::Tensor> spline_backward(torch::Tensor grad_y, torch::Tensor x,
                                           torch::Tensor w, torch::Tensor poly, double inv_h,
                                           double offset, bool need_x, bool need_w) {
  check_inputs(x, w);
  grad_y = grad_y.contiguous();
  const int64_t batch = x.size(0), in = x.size(1), out = w.size(2);
  const Grid g = make_grid(poly, inv_h, offset, w.size(1));
  auto gx = need_x ? torch::empty_like(x) : torch::Tensor();
  auto gw = need_w ? torch::zeros_like(w) : torch::Tensor();
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, batch * out));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spline_backward", [&] {
    at::parallel_for(0, in, grain, [&](int64_t i0, int64_t i1) {
      backward_inputs<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                grad_y.data_ptr<scalar_t>(),
                                need_x ? gx.data_ptr<scalar_t>() : nullptr,
                                need_w ? gw.data_ptr<scalar_t>() : nullptr, g, batch, in, out,
                                i0, i1);
    });
  });
  return {gx, gw};
}

// body(scalar_t{}, j0, j1) over the inputs j of x in parallel chunks, at x's float type.
template <typename Body>
void over_inputs(const torch::Tensor& x, Body body) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "spline_over_inputs", [&] {
    at::parallel_for(0, x.numel(), 4096,
                     [&](int64_t j0, int64_t j1) { body(scalar_t{}, j0, j1); });
  });
}

// x (batch, in) -> bases (batch, in, n), n = G + k.
torch::Tensor spline_bases(torch::Tensor x, torch::Tensor poly, double inv_h, double offset,
                           int64_t n) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "x must be contiguous (batch, in)");
  const Grid g = make_grid(poly, inv_h, offset, n);
  auto out = torch::empty({x.size(0), x.size(1), n}, x.options());
  over_inputs(x, [&](auto zero, int64_t j0, int64_t j1) {
    using scalar_t = decltype(zero);
    bases_rows<scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), g, j0, j1);
  });
  return out;
}

// back (batch, in, n) = grad_y @ W^T, x (batch, in) -> grad_x (batch, in).
torch::Tensor spline_input_grad(torch::Tensor back, torch::Tensor x, torch::Tensor poly,
                                double inv_h, double offset) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && back.dim() == 3 && back.is_contiguous() &&
                  back.size(0) == x.size(0) && back.size(1) == x.size(1) &&
                  back.scalar_type() == x.scalar_type(),
              "back must be contiguous (batch, in, n) for x (batch, in), of one dtype");
  const Grid g = make_grid(poly, inv_h, offset, back.size(2));
  auto gx = torch::empty_like(x);
  over_inputs(x, [&](auto zero, int64_t j0, int64_t j1) {
    using scalar_t = decltype(zero);
    input_grad_rows<scalar_t>(x.data_ptr<scalar_t>(), back.data_ptr<scalar_t>(),
                              gx.data_ptr<scalar_t>(), g, j0, j1);
  });
  return gx;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &spline_forward, "fused B-spline KAN spline term, forward (CPU)");
  m.def("backward", &spline_backward, "fused B-spline KAN spline term, backward (CPU)");
  m.def("bases", &spline_bases, "every B-spline basis of every input (CPU)");
  m.def("input_grad", &spline_input_grad, "the spline term's input gradient (CPU)");
}
