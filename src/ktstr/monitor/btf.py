"""Render a BPF program's data field by field from its BTF, read out of guest memory.

drgn reads kernel types from DWARF, but a BPF scheduler's own types (its
``.bss``, ``.data`` and ``.rodata`` sections, its map values) exist only
in the BTF the loader handed the kernel.  This is a small reader of that
format (``Documentation/bpf/btf.rst``): the header, the type records, the
string table, and a renderer from bytes to plain values.  The blob comes
from an untrusted guest, so every count, offset and recursion is bounded
and a malformed blob raises ``ValueError``, never more.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

MAGIC = 0xEB9F
MAX_BLOB = 16 << 20
MAX_TYPES = 200_000
MAX_DEPTH = 8
MAX_ITEMS = 64  # array elements and struct members rendered per level
MAX_NODES = 4096  # values rendered per call

# kinds
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
# extra 32-bit words after the 12-byte header (fixed), and per vlen entry
_FIXED = {INT: 1, ARRAY: 3, VAR: 1, DECL_TAG: 1}
_PER_ITEM = {STRUCT: 3, UNION: 3, ENUM: 2, FUNC_PROTO: 2, DATASEC: 3, ENUM64: 3}


@dataclass
class Type:
    kind: int
    name: str
    size_or_type: int
    vlen: int
    kflag: bool
    extra: tuple[int, ...] = ()
    items: list[tuple[int, ...]] = field(default_factory=list)


class Btf:
    """A parsed BTF blob: ``types[id]`` (id 0 is void)."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24 or len(blob) > MAX_BLOB:
            raise ValueError(f"BTF of {len(blob)} bytes")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob)
        if magic != MAGIC or hdr_len < 24 or hdr_len > len(blob):
            raise ValueError("not a little-endian BTF blob")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
        base = hdr_len
        types = blob[base + type_off : base + type_off + type_len]
        self.strings = blob[base + str_off : base + str_off + str_len]
        if len(types) != type_len or len(self.strings) != str_len:
            raise ValueError("BTF sections run past the blob")
        self.types: list[Type | None] = [None]
        pos = 0
        while pos + 12 <= len(types) and len(self.types) < MAX_TYPES:
            name_off, info, size_or_type = struct.unpack_from("<III", types, pos)
            pos += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
            fixed, per = _FIXED.get(kind, 0), _PER_ITEM.get(kind, 0)
            need = 4 * (fixed + per * vlen)
            if pos + need > len(types):
                raise ValueError("a BTF type runs past its section")
            words = struct.unpack_from(f"<{fixed + per * vlen}I", types, pos)
            pos += need
            items = [words[fixed + i * per : fixed + (i + 1) * per] for i in range(vlen)]
            self.types.append(
                Type(kind, self.name(name_off), size_or_type, vlen, kflag, words[:fixed], items)
            )

    def name(self, offset: int) -> str:
        end = self.strings.find(b"\0", offset)
        if offset >= len(self.strings) or end < 0:
            return ""
        return self.strings[offset:end].decode(errors="replace")

    def get(self, type_id: int) -> Type | None:
        return self.types[type_id] if 0 < type_id < len(self.types) else None

    def resolve(self, type_id: int) -> tuple[int, Type | None]:
        """Past typedefs and qualifiers, at most ``MAX_DEPTH`` of them."""
        t = self.get(type_id)
        for _ in range(MAX_DEPTH * 4):
            if t is None or t.kind not in _QUALIFIERS:
                return type_id, t
            type_id = t.size_or_type
            t = self.get(type_id)
        return type_id, None

    def size(self, type_id: int, depth: int = 0) -> int:
        """Bytes a value of the type takes (0 when unknown)."""
        type_id, t = self.resolve(type_id)
        if t is None or depth > MAX_DEPTH:
            return 0
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return t.size_or_type
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            return self.size(t.extra[0], depth + 1) * t.extra[2]
        if t.kind == VAR:
            return self.size(t.size_or_type, depth + 1)
        return 0

    def render(self, type_id: int, data: bytes) -> Any:
        """The value of ``type_id`` in ``data`` as JSON-ready values (bounded)."""
        return _Renderer(self).value(type_id, data, 0)

    def is_datasec(self, type_id: int) -> bool:
        return self.resolve(type_id)[1] is not None and self.resolve(type_id)[1].kind == DATASEC

    def datasec(self, type_id: int, data: bytes) -> dict[str, Any] | None:
        """A ``.bss``/``.data``/``.rodata`` value rendered variable by variable, or None
        when the type is no DATASEC."""
        _, t = self.resolve(type_id)
        if t is None or t.kind != DATASEC:
            return None
        out: dict[str, Any] = {}
        renderer = _Renderer(self)
        for var_id, offset, size in t.items[: MAX_ITEMS * 4]:
            var = self.get(var_id)
            if var is None or var.kind != VAR:
                continue
            out[var.name] = renderer.value(var.size_or_type, data[offset : offset + size], 0)
        return out


class _Renderer:
    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self.nodes = 0

    def value(self, type_id: int, data: bytes, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            return "..."
        type_id, t = self.btf.resolve(type_id)
        if t is None:
            return data.hex() if data else None
        if t.kind == INT:
            size = t.size_or_type
            if size > len(data) or size not in (1, 2, 4, 8, 16):
                return data[:size].hex()
            signed = bool((t.extra[0] >> 24) & 1)
            value = int.from_bytes(data[:size], "little", signed=signed)
            return bool(value) if (t.extra[0] >> 24) & 4 else value
        if t.kind == PTR:
            return hex(int.from_bytes(data[:8], "little")) if len(data) >= 8 else None
        if t.kind in (ENUM, ENUM64):
            size = min(t.size_or_type, len(data), 8)
            value = int.from_bytes(data[:size], "little", signed=t.kflag)
            for item in t.items[:1024]:
                v = item[1] if t.kind == ENUM else item[1] | (item[2] << 32)
                if v == value:
                    return self.btf.name(item[0])
            return value
        if t.kind == FLOAT:
            fmt = {4: "<f", 8: "<d"}.get(t.size_or_type)
            return struct.unpack_from(fmt, data)[0] if fmt and len(data) >= len(fmt) else None
        if t.kind == ARRAY:
            return self._array(t, data, depth)
        if t.kind in (STRUCT, UNION):
            return self._struct(t, data, depth)
        return data.hex()

    def _array(self, t: Type, data: bytes, depth: int) -> Any:
        elem_id, _index, count = t.extra
        size = self.btf.size(elem_id)
        _, elem = self.btf.resolve(elem_id)
        if elem is not None and elem.kind == INT and size == 1:  # char[]: text
            raw = data[: min(count, len(data))].split(b"\0", 1)[0]
            return raw.decode(errors="replace")
        if size <= 0:
            return data.hex()
        out = []
        for i in range(min(count, MAX_ITEMS)):
            chunk = data[i * size : (i + 1) * size]
            if len(chunk) < size:
                break
            out.append(self.value(elem_id, chunk, depth + 1))
        if count > MAX_ITEMS:
            out.append(f"... {count - MAX_ITEMS} more")
        return out

    def _struct(self, t: Type, data: bytes, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, (name_off, member_type, offset) in enumerate(t.items[:MAX_ITEMS]):
            name = self.btf.name(name_off) or f"<anon {i}>"
            bits = offset >> 24 if t.kflag else 0
            bit_offset = offset & 0xFFFFFF if t.kflag else offset
            if bits:  # a bitfield: bits of a little-endian word
                start = bit_offset // 8
                word = int.from_bytes(data[start : start + 8], "little")
                out[name] = (word >> (bit_offset % 8)) & ((1 << bits) - 1)
                continue
            start = bit_offset // 8
            size = self.btf.size(member_type) or max(0, len(data) - start)
            out[name] = self.value(member_type, data[start : start + size], depth + 1)
        return out
