"""ktstr: test Linux process schedulers in QEMU VMs with declared CPU topologies."""

from ktstr.topology import Topology

__version__ = "0.1.0"
__all__ = ["Topology", "__version__"]
