"""The kernel a variant names, on the worker that runs it: from its cache, else fetched.

A worker host may never have run ``ktstr kernel fetch``; it fetches Debian's
kernel into its own cache the first time a variant needs one, so a new
host joins a gauntlet with nothing but ktstr installed.  A kernel it
cannot get ends the variant in one sentence naming the host.
"""

from __future__ import annotations

import fcntl
import platform

from ktstr import paths
from ktstr.errors import KernelError, KtstrError
from ktstr.kernel.store import resolve


def flavour_of(release: str | None) -> str:
    """The Debian flavour a release names (``…-cloud-amd64``: cloud); cloud when none."""
    if release and "-cloud-" not in release and release.endswith("-amd64"):
        return "generic"
    return "cloud"


def ensure(spec: str | None) -> None:
    """Make sure ``spec`` (a release, a path, or None: the newest) resolves on this host."""
    from ktstr.kernel import debian

    try:
        resolve(spec)
        return
    except KernelError as missing:
        if spec and ("/" in spec or spec.startswith(".")):
            raise KernelError(
                f"{missing.cause} on {platform.node()}",
                "name the kernel by release, or put it at that path on every worker",
            ) from None
        paths.kernels_dir().mkdir(parents=True, exist_ok=True)
        # One fetch per host at a time: a worker's threads and its neighbours wait for it.
        with open(paths.kernels_dir() / ".fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                resolve(spec)
                return
            except KernelError:
                pass
            try:
                fetched = debian.fetch(flavour_of(spec))
            except KtstrError as err:
                raise KernelError(
                    f"{missing.cause} on {platform.node()}, and fetching one failed ({err.cause})",
                    "run 'ktstr kernel fetch' on that host",
                ) from None
    try:
        resolve(spec)
    except KernelError:
        raise KernelError(
            f"{platform.node()} has no kernel {spec}, and Debian offers {fetched.release}",
            "run the gauntlet with that release, or build the kernel on that host",
        ) from None
