"""Table 2 of the paper from a `benchmarks/cls_cifar10c.py` results.json: one markdown
row per arm (CIFAR-10-C top-1 per corruption type, mean over the 5 severities; the
mean over types; clean top-1), a row of differences to the baseline per TV arm, and
the issue's three checks spelled out (TV-Smooth above the baseline on the noise
types, TV-Sharp above it on the blur types, clean accuracy within 0.5 points).

    python benchmarks/cls_table.py runs/cls32/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Column order of the paper's Table 2 (with Defocus before Glass: see
# docs/classification.md on the header order), and the short headers used there.
COLUMNS = [("gaussian_noise", "Gauss."), ("shot_noise", "Shot"),
           ("impulse_noise", "Impulse"), ("defocus_blur", "Defocus"),
           ("glass_blur", "Glass"), ("motion_blur", "Motion"), ("zoom_blur", "Zoom"),
           ("snow", "Snow"), ("frost", "Frost"), ("fog", "Fog"),
           ("brightness", "Bright."), ("contrast", "Contrast"),
           ("elastic_transform", "Elastic"), ("pixelate", "Pixel."),
           ("jpeg_compression", "JPEG")]
NOISE = ("gaussian_noise", "shot_noise", "impulse_noise")
BLUR = ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur")
BASE, SMOOTH, SHARP = "allconv", "allconv-tv-smooth", "allconv-tv-sharp"
LABEL = {BASE: "AllConv", SMOOTH: "TV-Smooth", SHARP: "TV-Sharp"}


def _cell(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.1f}" if signed else f"{v:.1f}"


def table(results: dict) -> str:
    """The markdown table and the checks, for whichever arms ``results`` holds."""
    arms = [a for a in (BASE, SMOOTH, SHARP) if a in results]
    head = ["arm (measured here)"] + [h for _, h in COLUMNS] + ["All", "clean",
                                                                "clean (10k)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row_of(arm: str) -> list[float | None]:
        t = results[arm]["top1"]
        return [t.get(k) for k, _ in COLUMNS] + [t.get("all"), t.get("clean"),
                                                 t.get("clean_all")]

    for arm in arms:
        lines.append("| " + " | ".join([LABEL[arm]] + [_cell(v) for v in row_of(arm)])
                     + " |")
    if BASE in results:
        base = row_of(BASE)
        for arm in arms:
            if arm == BASE:
                continue
            diff = [None if a is None or b is None else a - b
                    for a, b in zip(row_of(arm), base, strict=True)]
            lines.append("| " + " | ".join([f"{LABEL[arm]} - AllConv"]
                                           + [_cell(v, True) for v in diff]) + " |")
    out = "\n".join(lines)
    checks = []
    t = {a: results[a]["top1"] for a in arms}
    if BASE in t and SMOOTH in t:
        won = [k for k in NOISE if k in t[SMOOTH] and t[SMOOTH][k] > t[BASE][k]]
        checks.append(f"TV-Smooth above AllConv on noise types: {len(won)} of "
                      f"{len(NOISE)} ({', '.join(won) or 'none'})")
    if BASE in t and SHARP in t:
        won = [k for k in BLUR if k in t[SHARP] and t[SHARP][k] > t[BASE][k]]
        checks.append(f"TV-Sharp above AllConv on blur types: {len(won)} of "
                      f"{len(BLUR)} ({', '.join(won) or 'none'})")
    for arm in (SMOOTH, SHARP):
        if BASE in t and arm in t:
            key = "clean_all" if "clean_all" in t[arm] and "clean_all" in t[BASE] \
                else "clean"
            d = t[arm][key] - t[BASE][key]
            checks.append(f"{LABEL[arm]} clean top-1 minus AllConv ({key}): {d:+.2f} "
                          f"points ({'within' if abs(d) <= 0.5 else 'outside'} 0.5)")
    return out + ("\n\n" + "\n".join(f"- {c}" for c in checks) if checks else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="results.json of benchmarks/cls_cifar10c.py")
    args = ap.parse_args()
    print(table(json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
