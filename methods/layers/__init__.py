"""The KAN layer library: layers (dense, meta-learned, codebook, SHARe), bases and splines,
the compressed-model file, the C++/Triton kernels and the architectures tasks build. It
imports no method plugin, task or harness module (only `suite.errors`); tests/test_architecture.py
walks the imports to keep it so."""
