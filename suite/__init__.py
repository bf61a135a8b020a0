"""The kanbench harness: config, registry, runner, grid, store, measurement, tracking, reports.
Nothing here knows a particular task or method."""

import logging

# torch warns at import on machines without a CUDA runtime; that is the expected case here.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
