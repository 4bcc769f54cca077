"""Compute kernels: numba forward/backward kernels and their NumPy twins."""
X = 1
