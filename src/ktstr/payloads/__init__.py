"""Payloads: real programs (stress-ng, hackbench, fio, ...) run in a scenario's cgroups.

``model`` declares them, ``catalog`` ships the common ones, ``parse`` reads
their output on the host, ``pack`` puts their binaries into the guest.
"""
