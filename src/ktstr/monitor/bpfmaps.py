"""The BPF scheduler's maps as the kernel holds them: names, types, sizes, and the
entries of array, hash and queue maps (bounded), rendered from the program's BTF
where it has one.

The scheduler's maps are those its ``struct_ops`` programs use, plus its
``struct_ops`` map itself; other BPF users in the guest are left out.
Everything read is bounded: map counts, entries, bytes per value.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import drgn
from drgn import container_of
from drgn.helpers.linux.bpf import bpf_map_for_each, bpf_prog_for_each, bpf_prog_used_maps

from ktstr.monitor.btf import Btf

MAX_MAPS = 64
MAX_PROGS = 1024
MAX_ENTRIES = 64  # entries shown per map
MAX_BUCKETS = 1 << 14  # hash buckets looked at per map
MAX_VALUE = 64 * 1024  # bytes read per value (a .bss may be larger: it is cut)
MAX_BTF = 8 << 20


def _enum(obj: drgn.Object) -> str:
    value = int(obj.value_())
    names = {v: n for n, v in (obj.type_.enumerators or ())}
    return names.get(value, str(value)).removeprefix("BPF_MAP_TYPE_").removeprefix("BPF_PROG_TYPE_")


def scheduler_maps(prog: drgn.Program) -> list[drgn.Object]:
    """``struct bpf_map *`` of the maps the loaded sched_ext programs use, by id."""
    found: dict[int, drgn.Object] = {}
    for bpf_prog in itertools.islice(bpf_prog_for_each(prog), MAX_PROGS):
        if _enum(bpf_prog.type) != "STRUCT_OPS":
            continue
        for m in itertools.islice(bpf_prog_used_maps(bpf_prog), MAX_MAPS):
            found.setdefault(int(m.id.value_()), m)
    for m in itertools.islice(bpf_map_for_each(prog), 4 * MAX_MAPS):
        if _enum(m.map_type) == "STRUCT_OPS":
            found.setdefault(int(m.id.value_()), m)
    return [found[k] for k in sorted(found)[:MAX_MAPS]]


def _btf(prog: drgn.Program, m: drgn.Object, cache: dict[int, Btf | None]) -> Btf | None:
    """The map's BTF, parsed once per ``struct btf``; None without one or when unreadable."""
    address = m.btf.value_()
    if not address:
        return None
    if address not in cache:
        try:
            size = int(m.btf.data_size.value_())
            if not 0 < size <= MAX_BTF:
                raise ValueError(f"BTF of {size} bytes")
            cache[address] = Btf(prog.read(m.btf.data.value_(), size))
        except (ValueError, drgn.FaultError):
            cache[address] = None
    return cache[address]


def _render(btf: Btf | None, type_id: int, data: bytes) -> Any:
    if btf is None or not type_id:  # no type: a 4- or 8-byte value is most likely a number
        return int.from_bytes(data, "little") if len(data) in (4, 8) else data.hex()
    try:
        return btf.render(type_id, data)
    except (ValueError, IndexError, KeyError, struct.error):
        return data.hex()


def _array_entries(m: drgn.Object, btf: Btf | None) -> list[dict[str, Any]]:
    prog = m.prog_
    array = container_of(m, "struct bpf_array", "map")
    elem_size = int(array.elem_size.value_())
    value_size = min(int(m.value_size.value_()), MAX_VALUE)
    base = array.value.address_
    value_type = int(m.btf_value_type_id.value_())
    out = []
    for i in range(min(int(m.max_entries.value_()), MAX_ENTRIES)):
        data = prog.read(base + i * elem_size, value_size)
        out.append({"key": i, "value": _render(btf, value_type, data)})
    return out


def _hash_entries(m: drgn.Object, btf: Btf | None) -> list[dict[str, Any]]:
    prog = m.prog_
    htab = container_of(m, "struct bpf_htab", "map")
    key_size = int(m.key_size.value_())
    value_size = min(int(m.value_size.value_()), MAX_VALUE)
    key_at = drgn.offsetof(prog.type("struct htab_elem"), "key")
    value_at = key_at + (key_size + 7) // 8 * 8
    node_type = prog.type("struct hlist_nulls_node *")
    key_type, value_type = int(m.btf_key_type_id.value_()), int(m.btf_value_type_id.value_())
    out: list[dict[str, Any]] = []
    for b in range(min(int(htab.n_buckets.value_()), MAX_BUCKETS)):
        node = htab.buckets[b].head.first.value_()
        steps = 0
        while node and not node & 1 and len(out) < MAX_ENTRIES and steps < MAX_ENTRIES:
            key = prog.read(node + key_at, key_size)
            value = prog.read(node + value_at, value_size)
            out.append(
                {"key": _render(btf, key_type, key), "value": _render(btf, value_type, value)}
            )
            node = drgn.Object(prog, node_type, node).next.value_()
            steps += 1
        if len(out) >= MAX_ENTRIES:
            break
    return out


def _queue_entries(m: drgn.Object, btf: Btf | None) -> list[Any]:
    """A queue or stack map's elements, oldest first (``tail`` to ``head``)."""
    prog = m.prog_
    qs = container_of(m, "struct bpf_queue_stack", "map")
    size, head, tail = int(qs.size.value_()), int(qs.head.value_()), int(qs.tail.value_())
    value_size = min(int(m.value_size.value_()), MAX_VALUE)
    base = qs.elements.address_
    value_type = int(m.btf_value_type_id.value_())
    out = []
    i = tail
    while size and i != head and len(out) < MAX_ENTRIES and 0 <= i < size:
        out.append(_render(btf, value_type, prog.read(base + i * value_size, value_size)))
        i = (i + 1) % size
    return out


def describe(m: drgn.Object, cache: dict[int, Btf | None]) -> dict[str, Any]:
    """One map: id, name, type, sizes, and its entries where the type allows (or why not)."""
    prog = m.prog_
    kind = _enum(m.map_type)
    out: dict[str, Any] = {
        "id": int(m.id.value_()),
        "name": m.name.string_().decode(errors="replace"),
        "type": kind,
        "key_size": int(m.key_size.value_()),
        "value_size": int(m.value_size.value_()),
        "max_entries": int(m.max_entries.value_()),
    }
    btf = _btf(prog, m, cache)
    try:
        if kind == "ARRAY":
            value_type = int(m.btf_value_type_id.value_())
            if btf is not None and btf.is_datasec(value_type):  # .bss/.data/.rodata
                array = container_of(m, "struct bpf_array", "map")
                data = prog.read(array.value.address_, min(int(m.value_size.value_()), MAX_VALUE))
                out["variables"] = btf.datasec(value_type, data)
            else:
                out["entries"] = _array_entries(m, btf)
        elif kind in ("HASH", "LRU_HASH"):
            out["entries"] = _hash_entries(m, btf)
        elif kind in ("QUEUE", "STACK"):
            out["entries"] = _queue_entries(m, btf)
        else:
            out["entries_not_read"] = f"{kind} maps are listed without their entries"
    except (drgn.FaultError, LookupError, ValueError) as err:
        out["entries_not_read"] = f"reading its entries failed: {err}"
    return out


def maps(prog: drgn.Program) -> list[dict[str, Any]]:
    """Every map of the loaded scheduler, described."""
    cache: dict[int, Btf | None] = {}
    return [describe(m, cache) for m in scheduler_maps(prog)]
