"""kanbench: a benchmark suite for compressing Kolmogorov-Arnold Networks, and its Python API.

    import kanbench
    model = kanbench.from_efficient_kan(state_dict)      # or from_pykan(model), load(path)
    small = kanbench.compress(model, "share_int8", codebook_size=256)
    kanbench.save(small, "small.safetensors")
    kanbench.measure(small, input_shape=(64,))           # bytes, latency, memory
    kanbench.evaluate(small, "digits")                   # a registered task's test metrics

The harness, the tasks and the methods are the repository's top-level folders suite/, tasks/
and methods/, imported as kanbench.suite, kanbench.tasks and kanbench.methods. Importing
kanbench imports no torch; the API's functions import it when first called.
"""

from pathlib import Path as _Path

# In a checkout those folders sit beside this one: search them there, so that a checkout's
# scripts import that checkout (an installed wheel holds them inside this folder instead).
_here = _Path(__file__).resolve().parent
if not (_here / "suite").is_dir() and (_here.parent / "suite" / "__init__.py").is_file():
    __path__.append(str(_here.parent))

__version__ = "0.2.0"
__all__ = ["compress", "evaluate", "from_efficient_kan", "from_pykan", "kan_bytes", "load",
           "measure", "save"]


def __getattr__(name: str):
    if name in __all__:
        from kanbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'kanbench' has no attribute {name!r}")
