"""TLS between the client, the scheduler and the workers, for networks nobody trusts.

Dask's default transport is plain TCP: whoever reaches the scheduler can run
code on every worker.  With a CA and a certificate (and its key, unless the
certificate file holds it) on each side, and a ``tls://`` address, every
connection is encrypted and both ends must hold a certificate the CA signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktstr.errors import ConfigError


@dataclass(frozen=True)
class Tls:
    """The CA that signs every side's certificate, and this side's certificate and key."""

    ca: str
    cert: str
    key: str | None = None

    def security(self, role: str) -> Any:
        """Dask's Security for ``role`` (``client`` or ``worker``), encryption required."""
        from ktstr.distributed import require

        return require().Security(
            require_encryption=True,
            tls_ca_file=self.ca,
            **{f"tls_{role}_cert": self.cert, f"tls_{role}_key": self.key},
        )


def tls_from(
    address: str, ca: str | None, cert: str | None, key: str | None, flag: str
) -> Tls | None:
    """The TLS options as given (``flag``: their prefix, to name them), checked; None without."""
    if ca is None and cert is None and key is None:
        return None
    if ca is None or cert is None:
        raise ConfigError(
            f"TLS needs both {flag}-ca and {flag}-cert",
            f"give both (and {flag}-key unless the certificate file holds the key)",
        )
    if not address.startswith("tls://"):
        raise ConfigError(
            f"{flag}-* options were given with the address {address}, which is not tls://",
            "use the scheduler's tls:// address (start it with 'dask scheduler --protocol tls')",
        )
    for what, path in (("CA", ca), ("certificate", cert), ("key", key)):
        if path is not None and not Path(path).expanduser().is_file():
            raise ConfigError(f"the TLS {what} file {path} does not exist", "check the path")
    expand = lambda p: None if p is None else str(Path(p).expanduser())  # noqa: E731
    return Tls(expand(ca), expand(cert), expand(key))  # type: ignore[arg-type]
