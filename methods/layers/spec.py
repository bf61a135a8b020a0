"""KANSpec: the spline settings every KAN layer of a network shares, and the one source of
the suite's `kan` defaults and allowed values. Imports no torch, so the command line and the
config load it fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from kanbench.suite.errors import KanbenchError

if TYPE_CHECKING:
    import torch

BASIS_NAMES = ("bspline", "rbf", "gram")
CODEBOOK_SCOPES = ("model", "layer")   # one codebook per model, or one per layer
# how a meta-learned KAN convolution reads its generated weights besides kanbench's own
# (methods.layers.metakan.MetaKANConv2d): the MetaKAN authors' kernel slices
META_CONV_LAYOUTS = ("kernel_slices",)
ACTIVATIONS = {"silu": "SiLU", "gelu": "GELU", "relu": "ReLU", "tanh": "Tanh",
               "identity": "Identity"}  # base_activation -> its torch.nn class


@dataclass(frozen=True)
class KANSpec:
    """The spline settings shared by every KAN layer of a network."""

    grid_size: int = 5                     # G intervals on grid_range
    spline_order: int = 3                  # k
    grid_range: tuple[float, float] = (-1.0, 1.0)
    base_activation: str = "silu"
    spline_scaler: bool = True
    basis: str = "bspline"                 # bspline | rbf | gram (methods.layers.bases)
    rbf_centers: int = 8
    rbf_range: tuple[float, float] = (-2.0, 2.0)
    gram_degree: int = 3

    @classmethod
    def from_args(cls, kan: dict) -> KANSpec:
        """The run config's resolved `kan` section (lists for ranges) as a KANSpec; a bad
        value is a one-line KanbenchError."""
        try:
            return cls(**{f.name: tuple(kan[f.name]) if isinstance(kan[f.name], list)
                          else kan[f.name] for f in fields(cls)})
        except (ValueError, TypeError) as err:
            raise KanbenchError(f"kan settings: {err}") from None

    def as_args(self) -> dict:
        """The spec as a run config's `kan` section (lists for ranges): the suite's defaults
        of that section are `KANSpec().as_args()`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def __post_init__(self):
        if self.grid_size < 1 or self.spline_order < 0:
            raise ValueError(f"need grid_size >= 1 and spline_order >= 0, got {self}")
        for name in ("grid_range", "rbf_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"{name} must be increasing, got {[lo, hi]}")
        if self.base_activation not in ACTIVATIONS:
            raise ValueError(f"base_activation must be one of {sorted(ACTIVATIONS)}")
        if self.basis not in BASIS_NAMES:
            raise ValueError(f"basis must be one of {', '.join(BASIS_NAMES)}")
        if self.rbf_centers < 1 or self.gram_degree < 0:
            raise ValueError("need rbf_centers >= 1 and gram_degree >= 0")

    @property
    def n_coef(self) -> int:
        """Basis coefficients per edge: G + k B-spline coefficients, or one per RBF centre,
        or gram_degree + 1 polynomial coefficients."""
        return {"bspline": self.grid_size + self.spline_order, "rbf": self.rbf_centers,
                "gram": self.gram_degree + 1}[self.basis]

    def knots(self, dtype=None, device=None) -> torch.Tensor:
        """The uniform grid extended by k knots on each side: (G + 2k + 1,).
        Computed in float64 and rounded once to `dtype` (default float32)."""
        import torch

        lo, hi = self.grid_range
        h = (hi - lo) / self.grid_size
        steps = torch.arange(-self.spline_order, self.grid_size + self.spline_order + 1,
                             dtype=torch.float64)
        return (lo + h * steps).to(dtype=dtype or torch.float32, device=device)
