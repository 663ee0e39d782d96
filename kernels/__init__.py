"""CUDA C++ sources of gpubp's kernels (shipped as package data, compiled at run time).

``gpubp.ops.cuda_kernels`` reads these files, prepends the activation functors generated
from the activation table, and compiles them with NVRTC for the GPU in use.
"""
