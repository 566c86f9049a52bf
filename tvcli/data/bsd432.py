"""BSD432, the standard colour denoising training set (``tvcli data bsd432``).

BSD432 = the 500 photographs of BSDS500 (Arbelaez et al., TPAMI 2011; train 200,
val 100, test 200, 481x321 JPEGs) minus the 68 whose file stems are those of the
CBSD68 test set (all 68 are BSDS500 test photos): the colour training set of
DnCNN (Zhang et al. 2017) and of the paper's Table 6.

The folder written has the layout ``tvcli train`` reads: ``train/*.png`` (the
decoded JPEGs, lossless, not resized), ``val/*.png`` and ``manifest.json`` (for
every file: its source path, the sha256 of the source and of the stored PNG).
Validation images: the data recipe's (``tvcli data fetch``) validation split when
``registry`` is given -- the protocol under which the shipped models were
validated -- else 8 BSD432 photos set aside (then 424 are left for training).
With ``registry_train`` the recipe's training photos are added to train/.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tvcli._hashing import sha256_file
from tvcli.data.recipe import manifest_digest

__all__ = ["build_bsd432", "bsds500_photos", "BSDS500_COUNT", "CBSD68_COUNT"]

BSDS500_COUNT = 500
CBSD68_COUNT = 68
_SPLITS = ("train", "val", "test")


def bsds500_photos(bsds500: Path) -> list[Path]:
    """The JPEGs of a BSDS500 folder (``images/{train,val,test}/*.jpg``, or the
    folder ``BSR/BSDS500/data`` of the original archive), sorted by split and stem."""
    root = Path(bsds500)
    for cand in (root, root / "data", root / "BSR" / "BSDS500" / "data"):
        if (cand / "images").is_dir():
            root = cand
            break
    photos = [p for s in _SPLITS for p in sorted((root / "images" / s).glob("*.jpg"))]
    if len(photos) != BSDS500_COUNT:
        raise FileNotFoundError(f"{bsds500}: expected {BSDS500_COUNT} JPEGs under "
                                f"images/{{train,val,test}}/, found {len(photos)}")
    return photos


def _write_png(img, dest: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=dest.parent, suffix=".png", delete=False) as tmp:
        img.save(tmp, format="PNG")
    os.replace(tmp.name, dest)


def build_bsd432(out_dir: Path, bsds500: Path, cbsd68: Path, registry: Path | None = None,
                 registry_train: bool = False, log: Callable[[str], None] = print) -> dict:
    """Builds ``out_dir/{train,val}/*.png`` and ``out_dir/manifest.json``.

    Args:
        out_dir: destination (created; must not be an input folder).
        bsds500: BSDS500 folder (500 JPEGs).
        cbsd68: CBSD68 folder (68 images whose stems name the photos left out).
        registry: a folder made by ``tvcli data fetch`` (its val/ becomes val/).
        registry_train: also train on the registry's train/ photos.
    Returns:
        The manifest (also written).
    """
    from PIL import Image

    out_dir = Path(out_dir)
    photos = bsds500_photos(bsds500)
    held = sorted(p.stem for p in Path(cbsd68).iterdir()
                  if p.suffix.lower() in (".png", ".jpg", ".tif", ".bmp"))
    if len(held) != CBSD68_COUNT:
        raise FileNotFoundError(f"{cbsd68}: expected {CBSD68_COUNT} test images, found "
                                f"{len(held)}")
    stems = {p.stem for p in photos}
    missing = sorted(set(held) - stems)
    if missing:
        raise ValueError(f"CBSD68 stems not in BSDS500: {', '.join(missing[:5])}")
    keep = [p for p in photos if p.stem not in set(held)]
    val_from_bsd: list[Path] = []
    if registry is None:  # set 8 photos of the BSDS500 val split aside for validation
        val_from_bsd = [p for p in keep if p.parent.name == "val"][:8]
    for split in ("train", "val"):
        shutil.rmtree(out_dir / split, ignore_errors=True)
        (out_dir / split).mkdir(parents=True)
    entries = []
    for p in keep:
        split = "val" if p in val_from_bsd else "train"
        dest = out_dir / split / f"bsds_{p.stem}.png"
        img = Image.open(p).convert("RGB")
        _write_png(img, dest)
        entries.append({"file": f"{split}/{dest.name}", "split": split,
                        "source": f"BSDS500 images/{p.parent.name}/{p.name}",
                        "source_sha256": sha256_file(p), "stored_size": list(img.size),
                        "sha256": sha256_file(dest)})
    if registry is not None:
        reg_man = json.loads((Path(registry) / "manifest.json").read_text())
        for e in reg_man["images"]:
            if e["split"] == "train" and not registry_train:
                continue
            src = Path(registry) / e["file"]
            dest = out_dir / e["split"] / f"reg_{Path(e['file']).name}"
            shutil.copyfile(src, dest)
            entries.append({"file": f"{e['split']}/{dest.name}", "split": e["split"],
                            "source": f"tvcli data fetch: {e.get('source_package')} "
                            f"{e.get('source_version')} {e.get('path_in_package')}",
                            "source_sha256": e["sha256"],
                            "stored_size": e.get("stored_size"), "sha256": sha256_file(dest)})
    n_train = sum(e["split"] == "train" for e in entries)
    manifest = {
        "recipe": "tvcli.data.bsd432",
        "description": ("BSD432: BSDS500 minus the 68 CBSD68 photos"
                        + (" + the registry recipe's training photos" if registry_train else "")
                        + ("; validation: the registry recipe's val split" if registry
                           else "; validation: 8 BSDS500 val photos set aside")),
        "held_out": held,
        "sources": {"bsds500": str(Path(bsds500).resolve()),
                    "cbsd68": str(Path(cbsd68).resolve()),
                    **({"registry": str(Path(registry).resolve()),
                        "registry_digest": reg_man.get("digest")} if registry else {})},
        "images": entries,
    }
    manifest["digest"] = manifest_digest(manifest)
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out_dir / "manifest.json")
    log(f"{n_train} training and {len(entries) - n_train} validation images in {out_dir}")
    return manifest
