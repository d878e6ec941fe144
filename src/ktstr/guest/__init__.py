"""Code that runs inside the VM as PID 1's agent.

Standard library only, and nothing from the host side of ktstr except
``ktstr.wire``: the guest image packs just this package and the wire
module.
"""
