"""``ktstr doctor``: what this host lacks and how to fix it."""

from __future__ import annotations

import argparse


def cmd_doctor(args: argparse.Namespace) -> int:
    from ktstr import doctor

    results = doctor.checks()
    print(doctor.render(results))
    return 0 if all(c.ok or not c.required for c in results) else 1


def register(sub: argparse._SubParsersAction) -> None:
    doc = sub.add_parser("doctor", help="check this host and say how to fix what is missing")
    doc.set_defaults(func=cmd_doctor)
