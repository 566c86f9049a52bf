"""The learned lam of each TV layer over training (the paper's Fig. 3), from a run.

    python benchmarks/lam_history.py runs/allconv-tv-smooth-classify          # markdown
    python benchmarks/lam_history.py runs/dncnn-tv-s25 --csv > lams.csv
    python benchmarks/lam_history.py weights/manifest.json --entry dexined-tv-bsds.safetensors
    python benchmarks/lam_history.py RUN --plot lams.png     # needs matplotlib (tvcli[plot])

Reads ``RUN/ckpt.json`` (``lam_history``: every validation and step 0, recorded by
the shared training loop, tvcli/learning/train/loop.py) or a weights manifest entry (its
``lam_history`` table, written by ``--export``). Per-channel layers are shown as
the mean over channels (the CSV also has min and max); shared layers as their one
value. The header says the run's budget (steps, batch, wall time, threads).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tvcli.learning.train.export import lam_table  # noqa: E402


def load_table(path: Path, entry: str | None) -> tuple[dict, str]:
    """(lam table as :func:`tvcli.learning.train.lam_table` returns it, a one-line budget)."""
    if path.is_dir():
        path = path / "ckpt.json"
    doc = json.loads(path.read_text())
    if "weights" in doc:  # a weights manifest
        entries = [e for e in doc["weights"] if entry in (e["file"], e["model"])]
        if not entries:
            raise SystemExit(f"lam_history: no entry {entry!r} in {path} (give --entry FILE)")
        e = entries[0]
        if "lam_history" not in e:
            raise SystemExit(f"lam_history: {e['file']} has no lam_history (no learned TV "
                             "layers, or exported before it was recorded)")
        budget = (f"{e['model']}: {e['steps']} steps, batch {e['batch']}, {e['wall_s']} s, "
                  f"threads {e.get('threads', '?')}, seed {e['seed']}")
        return e["lam_history"], budget
    hist = doc.get("lam_history")
    if not hist:
        raise SystemExit(f"lam_history: {path} has no lam_history (no learned TV layers, "
                         "or a run from before it was recorded)")
    cfg = doc["config"]
    budget = (f"{cfg['model']}: step {doc['step']} of {cfg['steps']}, batch {cfg['batch']}, "
              f"{doc['wall_s']:.0f} s, threads {doc.get('threads', '?')}, seed {cfg['seed']}")
    return lam_table(hist), budget


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="run folder, its ckpt.json, or a manifest.json")
    ap.add_argument("--entry", default=None, help="manifest entry (file or model name)")
    ap.add_argument("--csv", action="store_true", help="CSV (step, layer, channels, mean, "
                    "min, max) instead of a markdown table")
    ap.add_argument("--plot", type=Path, default=None, help="also write a PNG (matplotlib)")
    a = ap.parse_args()
    table, budget = load_table(a.source, a.entry)
    steps, layers = table["steps"], table["layers"]
    if a.csv:
        w = csv.writer(sys.stdout)
        w.writerow(["step", "layer", "channels", "mean", "min", "max"])
        for name, col in layers.items():
            for i, s in enumerate(steps):
                w.writerow([s, name, col["channels"], col["mean"][i],
                            col.get("min", col["mean"])[i], col.get("max", col["mean"])[i]])
    else:
        print(f"lam over training ({budget}); per-channel layers: mean over channels\n")
        names = list(layers)
        print("| step | " + " | ".join(
            n + (f" (mean of {layers[n]['channels']})" if layers[n]["channels"] > 1 else "")
            for n in names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for i, s in enumerate(steps):
            print(f"| {s} | " + " | ".join(f"{layers[n]['mean'][i]:.5g}" for n in names) + " |")
    if a.plot is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise SystemExit("lam_history: --plot needs matplotlib (pip install "
                             "'tvcli[plot]'); the table above has the same numbers") from None
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, col in layers.items():
            ax.plot(steps, col["mean"], marker=".", label=name)
        ax.set_xlabel("training step")
        ax.set_ylabel("learned lam (mean over channels)")
        ax.set_title(budget, fontsize=8)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f"wrote {a.plot}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
