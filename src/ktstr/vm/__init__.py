"""Everything about one QEMU VM: accelerator, argv, lifetime."""
