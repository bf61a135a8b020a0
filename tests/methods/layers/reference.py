"""An independent float64 B-spline reference: the textbook Cox-de Boor recursion."""

from kanbench.methods.layers.kan import KANSpec


def bspline(x: float, knots: list[float], i: int, k: int) -> float:
    """B_{i,k}(x) by the textbook recursion, one scalar at a time."""
    if k == 0:
        return 1.0 if knots[i] <= x < knots[i + 1] else 0.0
    left = (x - knots[i]) / (knots[i + k] - knots[i]) * bspline(x, knots, i, k - 1)
    right = (knots[i + k + 1] - x) / (knots[i + k + 1] - knots[i + 1]) * \
        bspline(x, knots, i + 1, k - 1)
    return left + right


def reference_knots(spec: KANSpec) -> list[float]:
    lo, hi = spec.grid_range
    h = (hi - lo) / spec.grid_size
    return [lo + h * (j - spec.spline_order)
            for j in range(spec.grid_size + 2 * spec.spline_order + 1)]
