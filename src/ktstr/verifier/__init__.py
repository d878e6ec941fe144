"""``ktstr verifier``: what the BPF verifier says about a scheduler's programs.

A scheduler is loaded in a VM with a small preload library (``shim``) that
asks the kernel for the verifier's statistics of every program its loader
loads; the guest reports them with the programs the attached scheduler
holds; the host reads the logs (``log``), runs the cells (``sweep``) and
prints tables, JSON and comparisons (``report``).
"""
