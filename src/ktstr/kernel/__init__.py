"""Kernels: inspect images, fetch Debian's, keep them in a cache, pick one for a run."""
