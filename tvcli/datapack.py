"""One compact file of uint8 image arrays, readable with torch and the standard
library only (for a bare GPU machine: no numpy, no Pillow needed to read it).

Layout: ``b"TVPACK1\\n"``, an 8-byte little-endian header length, a JSON header
``{"meta": {...}, "arrays": [{name, shape, offset, length}]}``, then one xz
stream per array (LZMA2 after a byte-delta filter of distance 1: neighbouring
pixels of a planar (C, H, W) image differ little, which roughly halves the size
of photographs; lossless). ``meta["digest"]`` is a sha256 over the arrays' raw
bytes and names, checked on read.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import lzma
import os
import struct
from pathlib import Path

import torch

__all__ = ["write_pack", "read_pack", "read_pack_meta"]

MAGIC = b"TVPACK1\n"
_FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 1},
            {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def _raw(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype != torch.uint8:
        raise TypeError(f"pack arrays are uint8, got {t.dtype}")
    return ctypes.string_at(t.data_ptr(), t.numel()) if t.numel() else b""


def write_pack(path: Path, arrays: dict[str, torch.Tensor], meta: dict | None = None) -> dict:
    """Writes ``arrays`` (name -> uint8 tensor) to ``path`` atomically; returns the header."""
    h = hashlib.sha256()
    blobs, entries, offset = [], [], 0
    for name in sorted(arrays):
        raw = _raw(arrays[name])
        h.update(name.encode() + b"\0" + raw)
        blob = lzma.compress(raw, format=lzma.FORMAT_XZ, filters=_FILTERS)
        entries.append({"name": name, "shape": list(arrays[name].shape), "offset": offset,
                        "length": len(blob)})
        blobs.append(blob)
        offset += len(blob)
    header = {"meta": {**(meta or {}), "digest": h.hexdigest()}, "arrays": entries}
    hb = json.dumps(header).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + struct.pack("<Q", len(hb)) + hb)
        for b in blobs:
            fh.write(b)
    os.replace(tmp, path)
    return header


def _header(fh) -> tuple[dict, int]:
    if fh.read(len(MAGIC)) != MAGIC:
        raise ValueError(f"{fh.name} is not a tvcli data pack")
    (n,) = struct.unpack("<Q", fh.read(8))
    return json.loads(fh.read(n)), len(MAGIC) + 8 + n


def read_pack_meta(path: Path) -> dict:
    """The pack's ``meta`` (without reading the arrays)."""
    with open(path, "rb") as fh:
        return _header(fh)[0]["meta"]


def read_pack(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, name -> uint8 tensor); raises ValueError when the digest does not match."""
    with open(path, "rb") as fh:
        header, start = _header(fh)
        body = fh.read()
    h = hashlib.sha256()
    out = {}
    for e in header["arrays"]:
        raw = lzma.decompress(body[e["offset"]:e["offset"] + e["length"]])
        h.update(e["name"].encode() + b"\0" + raw)
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else \
            torch.empty(0, dtype=torch.uint8)
        out[e["name"]] = t.reshape(e["shape"])
    if h.hexdigest() != header["meta"]["digest"]:
        raise ValueError(f"{path}: data digest mismatch (corrupt or truncated pack)")
    return header["meta"], out
