"""Code that runs inside the VM as PID 1's agent.

Standard library only, and nothing from the host side of ktstr except
``ktstr.wire``: the guest image packs just this package and the wire
module.

The image holds only the stdlib modules the agent imports, found by
importing it; so import at module top, and list in ``LAZY_IMPORTS``
any module imported later (on a rare path) to keep start-up cheap.
"""

# json.decoder: the C JSON scanner imports it to raise its error type.
# ktstr.guest.scenario: only scenario runs need it (and what it imports).
# ctypes: only SCHED_DEADLINE workers need it (sched_setattr has no os wrapper).
# ktstr.guest.execmode: only 'ktstr shell' needs it.
LAZY_IMPORTS = [
    "traceback",
    "json.decoder",
    "ktstr.guest.scenario",
    "ctypes",
    "ktstr.guest.execmode",
]
