"""VM tests: each boots a real kernel under QEMU (the conftest marks them vm)."""
