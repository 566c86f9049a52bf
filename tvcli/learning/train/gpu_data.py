"""The data files a GPU run carries (``python -m tvcli.learning.train.gpu make-data``).

* ``bsds.pack`` (denoise and edges): BSDS500 photos as their own JPEG bytes (a
  subset of train, all of val), the edge task's consensus labels, the denoisers'
  training/validation split (train + val minus CBSD68) and CBSD68 (the val JPEGs
  whose decoded pixels are CBSD68's PNGs, checked when packing and again on the GPU);
* ``eps.pack``: the substitute EPS benchmark's train and val photos (JPEG bytes)
  and ground truths (their PNG bytes);
* ``cifar10.tar.gz``: a per-class subset of the CIFAR-10 JPEG archive (the
  classification task reads it as it reads the full archive);
* ``cifar10c.pack`` (not carried: for scoring here): CIFAR-10-C of a subset.

:func:`tiny_packs` writes synthetic files of the same layout for the CPU dry run.
The pack format itself is :mod:`tvcli.data.pack`.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["make_bsds_pack", "make_cifar10c_pack", "make_cifar_subset", "make_eps_pack",
           "make_wsol_pack", "tiny_packs"]


def _file_bytes(p: Path) -> bytes:
    return Path(p).read_bytes()


def make_bsds_pack(bsds500: Path, cbsd68: Path, out: Path, n_train: int, n_val_denoise: int = 8,
                   kodak: Path | None = None, log: Callable = print) -> dict:
    """``bsds.pack``: the JPEG bytes of the first ``n_train`` BSDS500 train photos
    and of all 100 val photos (``photo/<split>/<stem>``); the edge task's consensus
    labels of all of them (``label/<split>/<stem>``, uint8 label + 1); the denoisers'
    ``train/`` and ``val/`` (aliases: those photos minus CBSD68, ``n_val_denoise``
    val photos set aside as bsd432 does) and ``test/CBSD68/`` (aliases of the val
    JPEGs whose decoded pixels equal CBSD68's PNGs -- checked here; a photo that
    differs is stored from its PNG instead); Kodak24 (xz) only with ``kodak``."""
    from tvcli.data.bsds import bsds_split, consensus_label, read_bsds_boundaries
    from tvcli.data.pack import Alias, ImageBytes, decode_image, write_pack

    cbsd = {p.stem: p for p in sorted(Path(cbsd68).glob("*.png"))}
    if len(cbsd) != 68:
        raise SystemExit(f"make-data: {cbsd68} holds {len(cbsd)} PNGs, expected CBSD68's 68")
    arrays: dict = {}
    den_val = 0
    for split in ("train", "val"):
        pairs = bsds_split(bsds500, split)
        if split == "train":
            pairs = pairs[:n_train]
        for img_path, mat_path in pairs:
            name = f"{split}/{img_path.stem}"
            photo = ImageBytes(_file_bytes(img_path))
            arrays[f"photo/{name}"] = photo
            lab = consensus_label(read_bsds_boundaries(mat_path))
            arrays[f"label/{name}"] = torch.from_numpy((lab + 1).astype("uint8"))[None]
            if img_path.stem in cbsd:
                ref = decode_image(cbsd[img_path.stem].read_bytes())
                arrays[f"test/CBSD68/{img_path.stem}"] = Alias(f"photo/{name}") \
                    if torch.equal(ref, photo.pixels) else ref
            elif split == "val" and den_val < n_val_denoise:
                arrays[f"val/{img_path.stem}"] = Alias(f"photo/{name}")
                den_val += 1
            else:
                arrays[f"train/{img_path.stem}"] = Alias(f"photo/{name}")
    missing = sorted(set(cbsd) - {k.rsplit("/", 1)[1] for k in arrays
                                  if k.startswith("test/CBSD68/")})
    for stem in missing:  # CBSD68 photos outside the packed BSDS500 splits
        arrays[f"test/CBSD68/{stem}"] = decode_image(cbsd[stem].read_bytes())
    if kodak is not None:
        for p in sorted(Path(kodak).glob("*.png")):
            arrays[f"test/Kodak24/{p.stem}"] = decode_image(p.read_bytes())
    n_alias = sum(isinstance(v, Alias) for k, v in arrays.items() if k.startswith("test/"))
    log(f"bsds.pack: {sum(k.startswith('photo/') for k in arrays)} photos, "
        f"{sum(k.startswith('train/') for k in arrays)} denoise train / "
        f"{den_val} val, CBSD68 {n_alias} of 68 as their BSDS500 JPEG")
    return write_pack(out, arrays, {
        "name": f"BSDS500 train[:{n_train}] + val as JPEG bytes; edge labels; denoise "
                f"split (minus CBSD68); CBSD68{' + Kodak24' if kodak else ''}",
        "n_train": n_train})


def make_eps_pack(eps: Path, bsds500: Path | None, out: Path,
                  limits: dict[str, int] | None = None, log: Callable = print) -> dict:
    """``eps.pack`` from a ``tvcli data eps`` folder: the first ``limits[split]``
    photos of each split named (default train 6, val 2), each as its BSDS500 JPEG
    bytes when those decode to the folder's input PNG (else the PNG's pixels), each
    ground truth as its PNG bytes (``<split>/input/<stem>``, ``<split>/gt/<stem>/<f>``)."""
    from tvcli.data.eps import FILTERS
    from tvcli.data.pack import ImageBytes, decode_image, write_pack

    limits = limits or {"train": 6, "val": 2}
    splits = tuple(limits)
    man = json.loads((eps / "manifest.json").read_text())
    arrays: dict = {}
    n_jpeg = 0
    taken: dict[str, int] = {}
    for rec in sorted(man["images"], key=lambda r: (r["split"], r["stem"])):
        split, stem = rec["split"], rec["stem"]
        if split not in splits or taken.get(split, 0) >= limits[split]:
            continue
        taken[split] = taken.get(split, 0) + 1
        png = eps / split / "input" / f"{stem}.png"
        ref = decode_image(png.read_bytes())
        src = Path(bsds500) / rec["source"] if bsds500 and rec.get("source") else None
        photo = ImageBytes(src.read_bytes()) if src is not None and src.is_file() else None
        if photo is not None and torch.equal(photo.pixels, ref):
            arrays[f"{split}/input/{stem}"] = photo
            n_jpeg += 1
        else:
            arrays[f"{split}/input/{stem}"] = ref
        for f in FILTERS:
            arrays[f"{split}/gt/{stem}/{f.name}"] = ImageBytes(
                (eps / split / "gt" / stem / f"{f.name}.png").read_bytes())
    n = sum(k.split("/")[1] == "input" for k in arrays)
    log(f"eps.pack: {n} photos ({n_jpeg} as JPEG) of {', '.join(splits)}, "
        f"{len(FILTERS)} ground truths each")
    return write_pack(out, arrays, {"name": f"EPS substitute ({', '.join(splits)})",
                                    "filters": [f.name for f in FILTERS],
                                    "eps_digest": man.get("digest")})


def make_cifar_subset(src: Path, out: Path, train_per_class: int, test_per_class: int,
                      log: Callable = print) -> int:
    """``cifar10.tar.gz``: the first ``train_per_class`` / ``test_per_class`` JPEGs
    of each class (by file name, as :func:`tvcli.data.cifar.load_cifar10` orders
    them), copied byte for byte into a new archive; returns the image count."""
    keep = {"train": train_per_class, "test": test_per_class}
    chosen: dict[tuple[str, str], list[tuple[str, tarfile.TarInfo]]] = {}
    with tarfile.open(src) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
    for m in members:
        parts = m.name.split("/")
        if len(parts) >= 3 and parts[-3] in keep and parts[-1].lower().endswith(".jpg"):
            chosen.setdefault((parts[-3], parts[-2]), []).append((parts[-1], m))
    picked = {m.name for (split, _), ms in chosen.items()
              for _, m in sorted(ms, key=lambda t: t[0])[:keep[split]]}
    tmp = out.with_suffix(".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with tarfile.open(src) as tar, tarfile.open(tmp, "w:gz", compresslevel=9) as dst:
        for m in tar:
            if m.name in picked:
                info = tarfile.TarInfo(m.name)
                info.size, info.mtime, info.mode = m.size, 0, 0o644
                dst.addfile(info, tar.extractfile(m))
                n += 1
    os.replace(tmp, out)
    log(f"cifar10.tar.gz: {n} images ({train_per_class} train / {test_per_class} test "
        "per class)")
    return n


def _tiny_photos(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 3, h, w, generator=g), 5, 1, 2)
    return (smooth * 255).to(torch.uint8)


def _jpeg(img: torch.Tensor) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).contiguous().numpy()).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_wsol_pack(data: Path, out: Path, train_per_class: int | None = None) -> dict:
    """``wsol.pack``: a ``tvcli data wsol`` benchmark (or any wsolevaluation-layout
    folder with one image size) as uint8 arrays (:func:`tvcli.data.wsol.pack_arrays`):
    train (the first ``train_per_class`` images of each class, default all), val
    (train-fullsup) and test with boxes and masks. Returns the pack's header."""
    import numpy as np

    from tvcli.data.pack import write_pack
    from tvcli.data.wsol import load_wsol_images, pack_arrays, read_wsol_split

    man = json.loads((data / "manifest.json").read_text()) if (
        data / "manifest.json").exists() else {}
    size = int(man.get("size", 224))
    arrays: dict = {}
    for split in ("train", "val", "test"):
        s = read_wsol_split(data, split)
        if split == "train" and train_per_class:
            seen: dict[int, int] = {}
            keep = []
            for iid in s.image_ids:
                c = s.labels[iid]
                if seen.get(c, 0) < train_per_class:
                    keep.append(iid)
                    seen[c] = seen.get(c, 0) + 1
            s.image_ids = keep
        x, y = load_wsol_images(s, size)
        arrays.update({k: torch.from_numpy(np.ascontiguousarray(v))
                       for k, v in pack_arrays(s, x, y).items()})
    return write_pack(out, arrays, {"name": f"wsol {data.name}", "size": size,
                                    "classes": man.get("classes"),
                                    "source_digest": man.get("digest"),
                                    "train_per_class": train_per_class})


def _tiny_wsol(pack_dir: Path) -> None:
    """A 32-pixel WSOL pack: a bright square (class = its size bucket) on a tiny photo."""
    from tvcli.data.pack import write_pack

    g = torch.Generator().manual_seed(3)
    arrays: dict = {}
    for split, n in (("train", 20), ("val", 10), ("test", 20)):
        imgs = _tiny_photos(n, 32, 32, {"train": 4, "val": 5, "test": 6}[split])
        labels = torch.arange(n) % 10
        boxes = torch.zeros(n, 4, 2, dtype=torch.uint8)
        masks = torch.zeros(n, 32, 32, dtype=torch.uint8)
        for i in range(n):
            side = 6 + int(labels[i]) * 2
            y, x = (int(torch.randint(0, 32 - side + 1, (1,), generator=g)) for _ in range(2))
            imgs[i, :, y:y + side, x:x + side] = 230
            masks[i, y:y + side, x:x + side] = 1
            boxes[i, :, 1] = torch.tensor([x, y, x + side - 1, y + side - 1])
        arrays.update({f"{split}/images": imgs, f"{split}/labels": labels.to(torch.uint8),
                       f"{split}/boxes": boxes, f"{split}/masks": masks})
    write_pack(pack_dir / "wsol.pack", arrays, {"name": "synthetic dry run", "size": 32,
                                                "classes": [str(c) for c in range(10)]})


def tiny_packs(pack_dir: Path) -> None:
    """Synthetic data files with the layout of the real ones (for the CPU dry run)."""
    from tvcli.data.pack import Alias, ImageBytes, write_pack
    from tvcli.models.allconv import CIFAR10_CLASSES

    pack_dir.mkdir(parents=True, exist_ok=True)
    imgs = _tiny_photos(6, 40, 40, 0)
    arrays: dict = {}
    for i, (split, stem) in enumerate([("train", "a"), ("train", "b"), ("train", "c"),
                                       ("val", "d"), ("val", "e")]):
        arrays[f"photo/{split}/{stem}"] = ImageBytes(_jpeg(imgs[i]))
        edge = (imgs[i].float().mean(0).diff(dim=1).abs() > 3).to(torch.uint8)
        arrays[f"label/{split}/{stem}"] = torch.nn.functional.pad(edge, (0, 1))[None] + 1
    arrays.update({"train/a": Alias("photo/train/a"), "train/b": Alias("photo/train/b"),
                   "train/c": Alias("photo/train/c"), "val/d": Alias("photo/val/d"),
                   "test/CBSD68/e": Alias("photo/val/e"),
                   "test/Kodak24/f": imgs[5, :, :, :32].contiguous()})
    write_pack(pack_dir / "bsds.pack", arrays, {"name": "synthetic dry run"})
    eps: dict = {}
    for i, (split, stem) in enumerate([("train", "a"), ("train", "b"), ("val", "c")]):
        eps[f"{split}/input/{stem}"] = ImageBytes(_jpeg(imgs[i]))
        for f, k in (("box", 3), ("wide", 7)):
            gt = torch.nn.functional.avg_pool2d(imgs[i][None].float(), k, 1, k // 2)[0]
            eps[f"{split}/gt/{stem}/{f}"] = gt.round().to(torch.uint8)
    write_pack(pack_dir / "eps.pack", eps, {"name": "synthetic dry run",
                                            "filters": ["box", "wide"]})
    cif = _tiny_photos(40, 32, 32, 1)
    with tarfile.open(pack_dir / "cifar10.tar.gz", "w:gz") as tar:
        for i in range(40):
            import io

            data = _jpeg(cif[i])
            info = tarfile.TarInfo(f"cifar10/{('train', 'test')[i % 2]}/"
                                   f"{CIFAR10_CLASSES[(i // 2) % 10]}/{i:04d}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    _tiny_wsol(pack_dir)


def make_cifar10c_pack(src: Path, out: Path, per_class: int, seed: int = 0,
                       log: Callable = print) -> dict:
    """``cifar10c.pack``: the first ``per_class`` test images of each class under
    every corruption of :mod:`tvcli.data.corruptions` at severities 1-5
    (``c/<name>/<severity>``, (N, 3, 32, 32) uint8) and their ``labels`` (N,);
    a corruption whose textures are missing (frost) is left out, and logged."""
    from tvcli.data.cifar import load_cifar10
    from tvcli.data.corruptions import CORRUPTIONS, MissingTexture, corrupt_batch
    from tvcli.data.pack import write_pack

    images, labels = load_cifar10(src, "test", per_class)
    hwc = images.permute(0, 2, 3, 1).numpy()
    arrays: dict = {"labels": labels.to(torch.uint8)}
    skipped = []
    for name in CORRUPTIONS:
        try:
            for sev in range(1, 6):
                c = corrupt_batch(hwc, name, sev, seed=seed)
                arrays[f"c/{name}/{sev}"] = torch.from_numpy(c).permute(0, 3, 1, 2).contiguous()
        except MissingTexture as exc:
            skipped.append(name)
            log(f"cifar10c.pack: {name} left out ({exc})")
    log(f"cifar10c.pack: {len(labels)} images x {len(CORRUPTIONS) - len(skipped)} "
        "corruptions x 5 severities")
    return write_pack(out, arrays, {"name": f"CIFAR-10-C from the JPEG test split, "
                                    f"{per_class} per class, seed {seed}",
                                    "skipped": skipped})
