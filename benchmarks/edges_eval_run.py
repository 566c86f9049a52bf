"""ODS / OIS / AP of a training run's checkpoint on BSDS500 test images.

    python benchmarks/edges_eval_run.py runs/edges/dexined-tv ../shared/data/bsds500 --n 200

Loads ``RUN/ckpt.safetensors`` (the model part), predicts the fused edge
probability of the first N test images (whole images, no tiles), applies NMS
and runs tvcli's BSDS benchmark (99 thresholds, tolerance 0.0075; ``edges_common``,
shared with ``edges_canny.py``). Prints one
JSON line with the run's step, wall time and the scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, when imported
from edges_common import read_photo, score, test_pairs  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a `tvcli train` run folder of dexined*")
    ap.add_argument("bsds", type=Path, help="BSDS500 (images/, groundTruth/)")
    ap.add_argument("--n", type=int, default=200, help="first N test images")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    a = ap.parse_args(argv)
    import torch

    from tvcli.learning.train.checkpoint import load_model_state
    from tvcli.models import build_model

    torch.set_num_threads(a.threads)
    meta = json.loads((a.run / "ckpt.json").read_text())
    model = build_model(meta["config"]["model"], **meta["model_config"])
    model.load_state_dict(load_model_state(a.run))
    model.eval()
    t0 = time.perf_counter()
    pairs = test_pairs(a.bsds, a.n)
    maps = []
    with torch.inference_mode():
        for img, _mat in pairs:
            x = torch.from_numpy(read_photo(img)).permute(2, 0, 1)[None]
            maps.append(torch.sigmoid(model(x)[-1])[0, 0].numpy())
    t1 = time.perf_counter()
    r = score(maps, [mat for _img, mat in pairs])
    print(json.dumps({"run": str(a.run), "model": meta["config"]["model"], "step": meta["step"],
                      "train_wall_s": round(meta["wall_s"]), "n_images": len(maps), **r,
                      "predict_s": round(t1 - t0, 1),
                      "eval_s": round(time.perf_counter() - t1, 1)}))


if __name__ == "__main__":
    main()
