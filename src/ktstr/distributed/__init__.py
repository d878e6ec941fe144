"""Running a gauntlet's variants on many hosts through Dask distributed.

Dask is an optional extra (``pip install 'ktstr[distributed]'``): nothing
outside this package imports it, and this package imports it only when a
distributed run starts, so a plain ktstr works without it.
"""

from __future__ import annotations

from types import ModuleType

from ktstr.errors import EnvironmentProblem

INSTALL_HINT = "install it with: pip install 'ktstr[distributed]'"


def require() -> ModuleType:
    """The ``distributed`` module, or one sentence saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise EnvironmentProblem(
            "a distributed gauntlet needs Dask distributed, which is not installed", INSTALL_HINT
        ) from None
    return distributed
