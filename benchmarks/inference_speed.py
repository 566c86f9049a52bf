"""Inference speed of every shipped network (`tvcli run`, seconds per megapixel) and
the classifiers' scoring throughput (issue 28 item 5; docs/cli.md "Inference speed").

Every measurement is a fresh ``python -m tvcli`` (or ``python -c``) subprocess, so
that two builds of tvcli can be compared in one run: ``--build NAME=PATH`` adds a
build whose ``tvcli`` package lies in PATH (put first on PYTHONPATH; e.g. a copy of
an older checkout's ``tvcli/`` with its compiled ``_C*.so``); the checkout's own is
``this``. Builds are interleaved per model and repeat, so they share the load.

* Image models (denoisers, eps, edges, cam): ``tvcli run MODEL`` on one photo, then
  on five (the same first one and four more; Kodak24 from ``../shared/data``, else
  the example images). Wall s/MP: the median over photos 2-5 of the record's
  ``seconds`` (read, infer, write; the model already loaded) over its megapixels;
  for cam, whose records carry no timing, the difference of the two commands' wall
  times over photos 2-5's megapixels. CPU s/MP: the difference of the two
  commands' CPU times over photos 2-5's megapixels (start-up and model loading
  cancel).
* Classifiers: top-1 scoring as ``tvcli.learning.tasks.classify.top1_accuracy`` runs
  it (batch 256) on the first ``--cls-images`` CIFAR-10 test images: images per
  second (wall and CPU), and the CIFAR-10-C scoring time that rate implies for the
  protocol of docs/classification.md (``--c-per-class 200``: 19 corruptions x 5
  severities x 2,000 images plus the clean 10,000).

    OMP_NUM_THREADS=1 python benchmarks/inference_speed.py --threads 1 \
        --build before=/tmp/old/pkg --out /tmp/speed.json
    python benchmarks/inference_speed.py --summary /tmp/speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CIFAR = DATA / "cifar10" / "cifar10-jpeg.tar.gz"
CLASSIFIERS = ("allconv", "allconv-tv-smooth", "allconv-tv-sharp")
# CIFAR-10-C at --c-per-class 200 (docs/classification.md): 19 x 5 x 2000 + 10000
C_PROTOCOL_IMAGES = 19 * 5 * 2000 + 10000
_SCORE = """
import sys, time, torch
from tvcli.data.cifar import load_cifar10
from tvcli.learning.tasks.classify import top1_accuracy
from tvcli.models.registry import load_pretrained
torch.set_num_threads({threads})
model = load_pretrained({model!r})[0]
x, y = load_cifar10({data!r}, "test", per_class={n} // 10)
top1_accuracy(model, x[:256], y[:256])  # warm-up
w0, c0 = time.perf_counter(), time.process_time()
acc = top1_accuracy(model, x, y)
print(time.perf_counter() - w0, time.process_time() - c0, acc)
"""


def _photos() -> list[Path]:
    kodak = sorted((DATA / "denoise" / "Kodak24").glob("*.png"))[:5]
    if len(kodak) == 5:
        return kodak
    return [ROOT / "examples" / "images" / n
            for n in ("astronaut.png", "coffee.png", "camera.png", "astronaut_noisy.png")]


def _env(path: str | None, threads: int) -> dict:
    # every build loads the same weights: this checkout's (a copied package has none)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               TVCLI_WEIGHTS_DIR=os.environ.get("TVCLI_WEIGHTS_DIR", str(ROOT / "weights")))
    if path:
        env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _child(cmd: list[str], env: dict, cwd: str) -> tuple[str, float, float]:
    """Runs ``cmd``; returns (stdout, CPU seconds of the child, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.stdout, cpu, time.perf_counter() - t0


def _model_args(model: str) -> list[str]:
    return ["--add-noise", "25"] if model.startswith(("dncnn", "ffdnet")) else []


def time_image_model(model: str, build: str | None, threads: int) -> dict:
    """Wall and CPU seconds per megapixel of ``tvcli run MODEL`` (see the module doc)."""
    photos = _photos()
    with tempfile.TemporaryDirectory() as tmp:
        base = [sys.executable, "-m", "tvcli", "run", model, "--json", "-j", str(threads),
                "--device", "cpu", *_model_args(model)]
        env = _env(build, threads)
        for sub in ("one", "many"):
            (Path(tmp) / sub).mkdir()
        _, cpu_one, wall_one = _child([*base, str(photos[0]), "-o", str(Path(tmp) / "one")],
                                      env, tmp)
        out, cpu_many, wall_many = _child(
            [*base, *map(str, photos), "-o", str(Path(tmp) / "many")], env, tmp)
    recs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rest = [next(r for r in recs if r.get("input", "").endswith(p.name)) for p in photos[1:]]
    mps = [r["size"][0] * r["size"][1] / 1e6 for r in rest]
    if all("seconds" in r for r in rest):
        wall = statistics.median(r["seconds"] / mp for r, mp in zip(rest, mps, strict=True))
    else:  # cam's records carry no timing
        wall = (wall_many - wall_one) / sum(mps)
    return {"wall_s_per_mp": wall, "cpu_s_per_mp": (cpu_many - cpu_one) / sum(mps),
            "megapixels": sum(mps)}


def time_classifier(model: str, build: str | None, threads: int, n: int) -> dict:
    """Scoring throughput of a classifier on the first ``n`` CIFAR-10 test images."""
    code = _SCORE.format(threads=threads, model=model, data=str(CIFAR), n=n)
    with tempfile.TemporaryDirectory() as tmp:
        out, _, _ = _child([sys.executable, "-c", code], _env(build, threads), tmp)
    wall, cpu, acc = map(float, out.split()[-3:])
    n = n // 10 * 10
    return {"images_per_s": n / wall, "cpu_ms_per_image": 1000 * cpu / n, "top1": acc,
            "c_protocol_minutes": C_PROTOCOL_IMAGES / (n / wall) / 60}


def summarize(run: dict) -> str:
    """Markdown tables: medians over repeats per model and build, and build ratios."""
    meta = run["meta"]
    builds = meta["builds"]
    lines = [f"{meta['date']}, {meta['machine']}, {meta['threads']} thread(s), load "
             f"{meta['load_start']} -> {meta['load_end']}, {meta['repeats']} repeats "
             f"(median); photos {', '.join(meta['photos'])}", ""]
    img = _table(run["rows"], builds, "model", "wall / CPU s/MP",
                 (("wall_s_per_mp", ".2f"), ("cpu_s_per_mp", ".2f")), " / ")
    cls = _table(run["rows"], builds, "classifier", "images/s, CPU ms/image, CIFAR-10-C min",
                 (("images_per_s", ".0f"), ("cpu_ms_per_image", ".2f"),
                  ("c_protocol_minutes", ".1f")), ", ")
    if img:
        lines += img + [""]
    return "\n".join(lines + cls)


def _table(rows: list[dict], builds: list[str], what: str, unit: str,
           fields: tuple[tuple[str, str], ...], sep: str) -> list[str]:
    """One markdown table, a row per model and a cell per build: the medians of
    ``fields`` (key, format) over the repeats of the rows that have the first key;
    [] when none has."""
    rows = [r for r in rows if fields[0][0] in r]
    if not rows:
        return []
    head = " | ".join(f"{b}: {unit}" for b in builds)
    out = [f"| {what} | {head} |", "|---" * (1 + len(builds)) + "|"]
    for m in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for b in builds:
            sel = [r for r in rows if r["model"] == m and r["build"] == b]
            cells.append(sep.join(format(statistics.median(r[k] for r in sel), f)
                                  for k, f in fields))
        out.append(f"| {m} | {' | '.join(cells)} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="",
                        help="comma list (default: every model with shipped weights)")
    parser.add_argument("--build", action="append", default=[], metavar="NAME=PATH",
                        help="another tvcli build to time beside this checkout's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cls-images", type=int, default=2000)
    parser.add_argument("--out", default="/tmp/inference_speed.json")
    parser.add_argument("--summary", metavar="JSON", help="print a finished run's tables")
    args = parser.parse_args()
    if args.summary:
        print(summarize(json.loads(Path(args.summary).read_text())))
        return
    sys.path.insert(0, str(ROOT))
    from tvcli.models.registry import list_weights

    models = [m for m in args.models.split(",") if m] or \
        list(dict.fromkeys(e["model"] for e in list_weights()))
    builds = {"this": None}
    for spec in args.build:
        name, _, path = spec.partition("=")
        builds[name] = path
    meta = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_start": [round(v, 1) for v in os.getloadavg()], "repeats": args.repeats,
            "builds": list(builds), "photos": [p.name for p in _photos()]}
    rows = []
    for rep in range(args.repeats):
        for model in models:
            # alternate the order of builds between repeats: neither always goes first
            for name in (list(builds) if rep % 2 == 0 else list(builds)[::-1]):
                path = builds[name]
                try:
                    r = (time_classifier(model, path, args.threads, args.cls_images)
                         if model in CLASSIFIERS else time_image_model(model, path, args.threads))
                except RuntimeError as exc:
                    print(f"{model} ({name}): {exc}", file=sys.stderr)
                    continue
                rows.append({"model": model, "build": name, "repeat": rep, **r})
                print(json.dumps(rows[-1]), flush=True)
            meta["load_end"] = [round(v, 1) for v in os.getloadavg()]
            tmp = Path(args.out + ".tmp")
            tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
            tmp.replace(args.out)
    print(summarize({"meta": meta, "rows": rows}))


if __name__ == "__main__":
    main()
