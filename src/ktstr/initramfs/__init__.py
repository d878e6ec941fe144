"""Building the guest's initramfs: a cached base image plus a small per-run archive."""
