"""fastnet: neural-network training on the CPU with numba kernels."""
