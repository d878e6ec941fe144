"""Extracting vmlinux from a bzImage, for every compression the kernel may use."""

import bz2
import gzip
import lzma
import os
import struct

import lz4.block
import pytest
import zstandard

from ktstr.kernel import payload

ELF = b"\x7fELF" + os.urandom(64) + b"A" * 300_000  # compressible, with a random head


def lz4_legacy(data: bytes) -> bytes:
    out = bytearray(b"\x02\x21\x4c\x18")
    block = 8 << 20
    for i in range(0, len(data), block):
        chunk = lz4.block.compress(data[i : i + block], store_size=False)
        out += struct.pack("<I", len(chunk)) + chunk
    return bytes(out)


COMPRESSORS = {
    "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
    "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ),
    "lzma": lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "lz4": lz4_legacy,
}


def fake_bzimage(compressed: bytes, setup_sects: int = 4) -> bytes:
    """A bzImage-shaped file: boot header, setup sectors, then the payload + size word."""
    blob = compressed + struct.pack("<I", len(ELF))  # the kernel appends the size
    header = bytearray((setup_sects + 1) * 512)
    header[0x1F1] = setup_sects
    header[0x202:0x206] = b"HdrS"
    offset = 0x100  # payload_offset is relative to the protected-mode code
    struct.pack_into("<II", header, 0x248, offset, len(blob))
    return bytes(header) + b"\0" * offset + blob + b"\0" * 64


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_extract_each_compression(kind):
    image = fake_bzimage(COMPRESSORS[kind](ELF))
    assert payload.compression(payload.compressed_payload(image)) == kind
    assert payload.extract_vmlinux(image) == ELF


def test_not_a_bzimage():
    with pytest.raises(payload.PayloadError, match="HdrS"):
        payload.compressed_payload(b"\0" * 4096)


def test_unknown_compression_and_corrupt_payload():
    with pytest.raises(payload.PayloadError, match="unknown kernel compression"):
        payload.extract_vmlinux(fake_bzimage(b"\x99" * 100))
    corrupt = bytearray(COMPRESSORS["xz"](ELF))
    corrupt[40:60] = b"\0" * 20
    with pytest.raises(payload.PayloadError, match="corrupt"):
        payload.extract_vmlinux(fake_bzimage(bytes(corrupt)))


def test_payload_outside_file_refused():
    image = bytearray(fake_bzimage(COMPRESSORS["gzip"](ELF)))
    struct.pack_into("<I", image, 0x24C, 10**9)
    with pytest.raises(payload.PayloadError, match="outside"):
        payload.compressed_payload(bytes(image))
