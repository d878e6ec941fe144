"""The kernel cache and the rule that picks the kernel for a run.

Order: ``--kernel <path|release>``, then ``KTSTR_KERNEL``, then the
newest cached kernel that has sched_ext.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ktstr import paths
from ktstr.errors import KernelError
from ktstr.kernel.image import KernelInfo, inspect

FETCH_HINT = "run 'ktstr kernel fetch' to download Debian's sched_ext kernel"


def version_key(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", release))


def cached_dirs() -> list[Path]:
    root = paths.kernels_dir()
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if (d / "meta.json").is_file()]
    return sorted(dirs, key=lambda d: version_key(d.name), reverse=True)


def cached_info(entry: Path) -> KernelInfo:
    """Inspect a cache entry, booting its extracted vmlinux when there is one."""
    image = entry / "vmlinux" if (entry / "vmlinux").is_file() else entry / "vmlinuz"
    modules = entry / "modules"
    info = inspect(image, entry / "config", modules if modules.is_dir() else None)
    info.release = entry.name
    return info


def meta(entry: Path) -> dict[str, object]:
    """What 'ktstr kernel fetch' recorded about a cache entry (mirror, suite, packages).

    Not a pure cache: the mirror and suite say where the matching source
    package is, so a corrupt file is reported rather than guessed around.
    """
    return paths.json_record(
        entry / "meta.json",
        (),
        "record 'ktstr kernel fetch' wrote",
        f"fetch the kernel again with 'ktstr kernel fetch --force', or delete {entry}",
    )


def _from_tree(tree: Path) -> KernelInfo:
    """A kernel build tree: its vmlinux (or bzImage) and .config."""
    for rel in ("vmlinux", "arch/x86/boot/bzImage", "vmlinuz", "bzImage"):
        if (tree / rel).is_file():
            config = tree / ".config" if (tree / ".config").is_file() else None
            return inspect(tree / rel, config)
    raise KernelError(
        f"{tree} holds no vmlinux or arch/x86/boot/bzImage",
        "build the kernel first or pass the image file itself",
    )


def resolve(spec: str | None = None) -> KernelInfo:
    """The kernel a run uses, by the documented order of precedence."""
    spec = spec or os.environ.get("KTSTR_KERNEL") or None
    if spec:
        path = Path(spec).expanduser()
        if path.is_dir() and not (path / "meta.json").is_file():
            return _from_tree(path)
        if path.is_file():
            return inspect(path)
        for entry in cached_dirs():
            if entry.name == spec or (path.is_dir() and entry.resolve() == path.resolve()):
                return cached_info(entry)
        matches = [e for e in cached_dirs() if e.name.startswith(spec)]
        if len(matches) == 1:
            return cached_info(matches[0])
        if "/" in spec or spec.startswith("."):
            raise KernelError(
                f"kernel {spec} does not exist",
                "pass an existing bzImage or vmlinux path, or a release from 'ktstr kernel list'",
            )
        raise KernelError(
            f"no cached kernel matches {spec!r}", FETCH_HINT + " or see 'ktstr kernel list'"
        )
    for entry in cached_dirs():
        info = cached_info(entry)
        if info.sched_ext:
            return info
    raise KernelError("no kernel with sched_ext is cached", FETCH_HINT)
