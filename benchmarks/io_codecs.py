"""Which image libraries read PNG / TIFF files faithfully, and how fast they code PNG.

Writes test files with independent writers (pypng for PNG, tifffile for TIFF),
decodes them with Pillow, imagecodecs (libpng), pypng, OpenCV and tifffile, and
prints OK when a reader returns exactly the written samples (tRNS expanded to an
alpha channel, MINISWHITE as 0 = black), else what it returned. Then times PNG
encoding / decoding of photographs (Kodak24 from ``../shared/data`` when present).
Missing libraries are skipped.

    python benchmarks/io_codecs.py
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "denoise" / "Kodak24"
RNG = np.random.default_rng(0)


def _pypng(arr: np.ndarray, **kwargs) -> bytes:
    import png

    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=c in (1, 2), alpha=c in (2, 4), bitdepth=8 * arr.dtype.itemsize,
               **kwargs).write_array(buf, arr.reshape(-1))
    return buf.getvalue()


def cases() -> dict[str, tuple[bytes, np.ndarray]]:
    """name -> (encoded file, the samples a faithful reader returns)."""
    import png
    import tifffile

    out = {}
    for dt in (np.uint8, np.uint16):
        for c in (1, 2, 3, 4):
            a = RNG.integers(0, np.iinfo(dt).max + 1, (32, 40, c), dtype=dt).squeeze()
            for inter in (False, True):
                out[f"png{8 * a.itemsize}-c{c}{'-interlaced' if inter else ''}"] = (
                    _pypng(a, interlace=inter), a)
    g = RNG.integers(0, 256, (32, 40), dtype=np.uint8)
    g[:4] = 7
    out["png8-gray-tRNS"] = (_pypng(g, transparent=7),
                             np.dstack([g, np.where(g == 7, 0, 255).astype(np.uint8)]))
    g16 = RNG.integers(0, 65536, (32, 40), dtype=np.uint16)
    g16[:4] = 300
    out["png16-gray-tRNS"] = (_pypng(g16, transparent=300),
                              np.dstack([g16, np.where(g16 == 300, 0, 65535).astype(np.uint16)]))
    rgb = RNG.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    rgb[:4] = (1, 2, 3)
    key = np.all(rgb == (1, 2, 3), axis=-1)
    out["png8-rgb-tRNS"] = (_pypng(rgb, transparent=(1, 2, 3)),
                            np.dstack([rgb, np.where(key, 0, 255).astype(np.uint8)]))
    pal = [(i, 255 - i, 3 * i % 256, 7 * i % 256) for i in range(256)]
    idx = RNG.integers(0, 256, (32, 40), dtype=np.uint8)
    buf = io.BytesIO()
    png.Writer(40, 32, palette=pal, bitdepth=8).write_array(buf, idx.reshape(-1))
    out["png8-palette-alpha"] = (buf.getvalue(), np.array(pal, np.uint8)[idx])
    t8 = RNG.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    t16 = RNG.integers(0, 65536, (32, 40, 3), dtype=np.uint16)
    for comp, arr in (("lzw", t8), ("lzw", t16), ("deflate", t8), ("zstd", t16)):
        b = io.BytesIO()
        tifffile.imwrite(b, arr, photometric="rgb", compression=comp)
        out[f"tiff{8 * arr.itemsize}-{comp}"] = (b.getvalue(), arr)
    w = RNG.integers(0, 256, (32, 40), dtype=np.uint8)
    b = io.BytesIO()
    tifffile.imwrite(b, w, photometric="miniswhite")
    out["tiff8-miniswhite"] = (b.getvalue(), 255 - w)
    return out


def _pillow(b):
    from PIL import Image

    im = Image.open(io.BytesIO(b))
    if "transparency" in im.info or im.mode == "P":
        im = im.convert("LA" if im.mode in ("L", "I;16", "I") else "RGBA")
    return np.asarray(im)


def _imagecodecs(b):
    import imagecodecs

    return imagecodecs.imread(b)


def _pypng_read(b):
    import png

    w, h, rows, info = png.Reader(bytes=b).asDirect()
    return np.vstack([np.asarray(r) for r in rows]).reshape(h, w, info["planes"]).squeeze()


def _opencv(b):
    import cv2

    a = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is not None and a.ndim == 3 and a.shape[2] >= 3:
        a = a[..., [2, 1, 0, 3][: a.shape[2]]]
    return a


def _tifffile(b):
    import tifffile

    return tifffile.imread(io.BytesIO(b))


READERS = {"Pillow": _pillow, "imagecodecs": _imagecodecs, "pypng": _pypng_read,
           "OpenCV": _opencv, "tifffile": _tifffile}


def fidelity() -> None:
    print("| file | " + " | ".join(READERS) + " |")
    print("|---" * (len(READERS) + 1) + "|")
    for name, (data, want) in cases().items():
        cells = []
        for reader, fn in READERS.items():
            if (reader == "pypng" and name.startswith("tiff")) or \
                    (reader == "tifffile" and name.startswith("png")):
                cells.append("-")
                continue
            try:
                got = np.squeeze(fn(data))
                ok = got.dtype == want.dtype and np.array_equal(got, np.squeeze(want))
                cells.append("OK" if ok else f"wrong ({got.dtype}, {got.shape[2:] or 1} ch)")
            except ImportError:
                cells.append("n/a")
            except Exception as exc:  # report, do not stop
                cells.append(f"error ({type(exc).__name__})")
        print(f"| {name} | " + " | ".join(cells) + " |")


def speed(limit: int = 6) -> None:
    import imagecodecs
    from PIL import Image

    files = sorted(DATA.glob("*.png"))[:limit]
    if not files:
        print("no Kodak24 photos found; speed skipped")
        return
    totals: dict[str, list[float]] = {}
    for f in files:
        a8 = np.asarray(Image.open(f))
        a16 = a8.astype(np.uint16) * 257 + RNG.integers(0, 257, a8.shape).astype(np.uint16)
        for depth, a in (("8-bit", a8), ("16-bit", a16)):
            coders = {"imagecodecs level 6 (libpng default)": lambda x: imagecodecs.png_encode(x),
                      "imagecodecs level 4, Sub filter (tvcli)":
                          lambda x: imagecodecs.png_encode(x, level=4, filter=16)}
            if depth == "8-bit":
                def pil(x):
                    b = io.BytesIO()
                    Image.fromarray(x).save(b, "PNG")
                    return b.getvalue()
                coders["Pillow default"] = pil
            for name, enc in coders.items():
                t0 = time.perf_counter()
                data = enc(a)
                t1 = time.perf_counter()
                imagecodecs.png_decode(data)
                t2 = time.perf_counter()
                tot = totals.setdefault(f"{depth} {name}", [0.0, 0.0, 0.0])
                tot[0] += len(data) / 1e6
                tot[1] += t1 - t0
                tot[2] += t2 - t1
    print(f"\n{len(files)} Kodak24 photos (16-bit: 8-bit * 257 + random low bits)")
    print("| encoder | MB | encode s | libpng decode s |\n|---|---|---|---|")
    for name, (mb, enc_s, dec_s) in totals.items():
        print(f"| {name} | {mb:.2f} | {enc_s:.2f} | {dec_s:.2f} |")


if __name__ == "__main__":
    fidelity()
    speed()
