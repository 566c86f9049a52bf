"""One compact file of uint8 image arrays (the data a GPU run carries).

Layout: ``b"TVPACK1\\n"``, an 8-byte little-endian header length, a JSON header
``{"meta": {...}, "arrays": [{name, shape, offset, length, codec}]}``, then one
stream per array. Codecs:

* ``"xz"`` (default): the raw (C, H, W) bytes, LZMA2 after a byte-delta filter of
  distance 1 (neighbouring pixels of a planar image differ little, which roughly
  halves the size of photographs; lossless). Read with the standard library.
* ``"image"``: an image file stored verbatim (a data set's own JPEG, or a PNG),
  decoded with Pillow on read to (3, H, W) RGB. For JPEG sources this is the
  smallest lossless form *relative to the source*; the decoded pixels may differ
  by a grey level between JPEG decoder versions, so the writer records the sha256
  of the pixels it decoded (``pixels``) and :func:`read_pack` lists the entries
  whose pixels differ on this machine in ``meta["decode_mismatch"]`` (no error).
* ``"alias"``: another entry's array under a second name (stored once).

``meta["digest"]`` is a sha256 over the names and the stored bytes (raw pixels for
xz, the file for image, the target's name for alias), checked on read.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import lzma
import os
import struct
from collections import OrderedDict
from pathlib import Path

import torch

__all__ = ["write_pack", "read_pack", "read_pack_meta", "load_data", "clear_cache", "ImageBytes",
           "Alias", "decode_image"]

MAGIC = b"TVPACK1\n"
_FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 1},
            {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def _raw(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype != torch.uint8:
        raise TypeError(f"pack arrays are uint8, got {t.dtype}")
    return ctypes.string_at(t.data_ptr(), t.numel()) if t.numel() else b""


class ImageBytes:
    """An image file's bytes to store verbatim (codec ``"image"``)."""

    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.pixels = decode_image(self.data)  # (3, H, W) uint8, as decoded here


class Alias(str):
    """The name of another entry, to store an array once under two names."""


def decode_image(data: bytes) -> torch.Tensor:
    """(3, H, W) uint8 RGB pixels of an image file's bytes (Pillow)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        t = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return t.reshape(h, w, 3).permute(2, 0, 1).contiguous()


def write_pack(path: Path, arrays: dict[str, torch.Tensor | ImageBytes | Alias],
               meta: dict | None = None) -> dict:
    """Writes ``arrays`` to ``path`` atomically; returns the header. Values: a uint8
    tensor (stored xz-compressed), :class:`ImageBytes` (stored verbatim) or
    :class:`Alias` (the name of another entry)."""
    h = hashlib.sha256()
    blobs, entries, offset = [], [], 0
    for name in sorted(arrays):
        v = arrays[name]
        if isinstance(v, Alias):
            if v not in arrays or isinstance(arrays[v], Alias):
                raise ValueError(f"alias {name!r} -> {v!r}: no such stored array")
            h.update(name.encode() + b"\0alias\0" + v.encode())
            entries.append({"name": name, "codec": "alias", "target": str(v)})
            continue
        if isinstance(v, ImageBytes):
            blob = v.data
            h.update(name.encode() + b"\0image\0" + blob)
            entries.append({"name": name, "codec": "image", "shape": list(v.pixels.shape),
                            "pixels": hashlib.sha256(_raw(v.pixels)).hexdigest(),
                            "offset": offset, "length": len(blob)})
        else:
            raw = _raw(v)
            h.update(name.encode() + b"\0" + raw)
            blob = lzma.compress(raw, format=lzma.FORMAT_XZ, filters=_FILTERS)
            entries.append({"name": name, "shape": list(v.shape), "offset": offset,
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


# Packs read in this process, most recent last: a GPU run trains up to 13 models on
# two packs, and decoding a pack's 500 JPEGs for every job cost ~2 s each (~26 s of
# a 300 s budget). Keyed on (path, size, mtime), so a rewritten file is read again.
_CACHE: OrderedDict[tuple[str, int, int], tuple[dict, dict[str, torch.Tensor]]] = OrderedDict()
_CACHE_PACKS = 2


def read_pack(path: Path, *, cache: bool = True) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, name -> uint8 tensor); raises ValueError when the digest does not match.
    ``meta["decode_mismatch"]``: names of image entries whose decoded pixels differ
    from the writer's (another JPEG decoder), empty when all match.

    ``cache``: keep the last two packs read in memory and return their arrays again
    while the file is unchanged. The tensors are then shared between callers: treat
    them as read-only (every reader in tvcli copies before it changes pixels)."""
    key = None
    if cache:
        st = os.stat(path)
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        if key in _CACHE:
            _CACHE.move_to_end(key)
            meta, arrays = _CACHE[key]
            return dict(meta), dict(arrays)
    meta, arrays = _read_pack(path)
    if key is not None:
        _CACHE[key] = (meta, arrays)
        while len(_CACHE) > _CACHE_PACKS:
            _CACHE.popitem(last=False)
    return dict(meta), dict(arrays)


def _read_pack(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with open(path, "rb") as fh:
        header, start = _header(fh)
        body = fh.read()
    h = hashlib.sha256()
    out: dict[str, torch.Tensor] = {}
    aliases, mismatch = {}, []
    for e in header["arrays"]:
        codec = e.get("codec", "xz")
        if codec == "alias":
            h.update(e["name"].encode() + b"\0alias\0" + e["target"].encode())
            aliases[e["name"]] = e["target"]
            continue
        blob = body[e["offset"]:e["offset"] + e["length"]]
        if codec == "image":
            h.update(e["name"].encode() + b"\0image\0" + blob)
            t = decode_image(blob)
            if list(t.shape) != e["shape"]:
                raise ValueError(f"{path}: {e['name']} decodes to {list(t.shape)}, "
                                 f"expected {e['shape']}")
            if hashlib.sha256(_raw(t)).hexdigest() != e["pixels"]:
                mismatch.append(e["name"])
            out[e["name"]] = t
            continue
        if codec != "xz":
            raise ValueError(f"{path}: unknown codec {codec!r} of {e['name']}")
        raw = lzma.decompress(blob)
        h.update(e["name"].encode() + b"\0" + raw)
        t = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else \
            torch.empty(0, dtype=torch.uint8)
        out[e["name"]] = t.reshape(e["shape"])
    if h.hexdigest() != header["meta"]["digest"]:
        raise ValueError(f"{path}: data digest mismatch (corrupt or truncated pack)")
    for name, target in aliases.items():
        out[name] = out[target]
    return {**header["meta"], "decode_mismatch": mismatch}, dict(sorted(out.items()))


_ARCHIVE_CACHE: dict[Path, tuple[dict, dict[str, torch.Tensor]]] = {}


def load_data(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """A GPU run's data file as (meta, arrays), read once per process: a pack's
    arrays (:func:`read_pack` keeps decoded packs itself), or for the CIFAR-10 JPEG
    archive ``test_images`` (N, 3, 32, 32) uint8 / ``test_labels`` (N,) of its test
    split."""
    path = Path(path)
    if path.suffix == ".pack":
        return read_pack(path)
    if path not in _ARCHIVE_CACHE:
        from tvcli.data.cifar import load_cifar10

        images, labels = load_cifar10(path, "test")
        _ARCHIVE_CACHE[path] = ({"name": path.name}, {"test_images": images,
                                                      "test_labels": labels})
    return _ARCHIVE_CACHE[path]


def clear_cache() -> None:
    """Forgets the archives :func:`load_data` read (packs stay in read_pack's cache)."""
    _ARCHIVE_CACHE.clear()
