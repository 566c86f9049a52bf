"""``save_file`` / ``load_file`` in the safetensors format, with or without the
``safetensors`` package.

The package is used when installed. Without it (a bare GPU machine that has only
torch) this module writes and reads the same format itself: an 8-byte
little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets},
"__metadata__": {...}}`` padded with spaces to 8 bytes, then the raw tensor bytes
(CPU, contiguous, little-endian). Files written either way read back either way.
"""

from __future__ import annotations

import ctypes
import json
import struct

import torch

__all__ = ["save_file", "load_file"]

_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
           torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
           torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
_FROM = {v: k for k, v in _DTYPES.items()}


def _bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""


def save_file_pure(tensors: dict[str, torch.Tensor], path: str,
                   metadata: dict[str, str] | None = None) -> None:
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        b = _bytes(t)
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)))
        fh.write(h)
        for b in blobs:
            fh.write(b)


def load_file_pure(path: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    with open(path, "rb") as fh:
        data = fh.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        dtype = _FROM[info["dtype"]]
        raw = bytearray(body[a:b])
        t = (torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype))
        out[name] = t.reshape(info["shape"]).to(device)
    return out


try:
    from safetensors.torch import load_file, save_file
except ImportError:  # a bare machine with torch only
    save_file, load_file = save_file_pure, load_file_pure  # type: ignore[assignment]
