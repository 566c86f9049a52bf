"""ODS / OIS / AP of a training run's checkpoint on BSDS500 test images.

    python benchmarks/edges_eval_run.py runs/edges/dexined-tv ../shared/data/bsds500 --n 200

Loads ``RUN/ckpt.safetensors`` (the model part), predicts the fused edge
probability of the first N test images (whole images, no tiles), applies NMS
and runs tvcli's BSDS benchmark (99 thresholds, tolerance 0.0075). Prints one
JSON line with the run's step, wall time and the scores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("bsds", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    from PIL import Image

    from tvcli import metrics as M
    from tvcli._safetensors import load_file
    from tvcli.data.bsds import bsds_split, read_bsds_boundaries
    from tvcli.edge_eval import nms
    from tvcli.models import build_model

    meta = json.loads((a.run / "ckpt.json").read_text())
    model = build_model(meta["config"]["model"], **meta["model_config"])
    state = {k[6:]: v for k, v in load_file(str(a.run / "ckpt.safetensors")).items()
             if k.startswith("model.")}
    model.load_state_dict(state)
    model.eval()
    t0 = time.perf_counter()
    preds, gts = [], []
    with torch.inference_mode():
        for img, mat in bsds_split(a.bsds, "test")[: a.n]:
            x = torch.from_numpy(np.asarray(Image.open(img).convert("RGB"), np.float32) / 255)
            e = torch.sigmoid(model(x.permute(2, 0, 1)[None])[-1])[0, 0].numpy()
            preds.append(nms(e))
            gts.append(read_bsds_boundaries(mat))
    t1 = time.perf_counter()
    r = M.edge_ods_ois_ap(preds, gts)
    print(json.dumps({"run": str(a.run), "model": meta["config"]["model"], "step": meta["step"],
                      "train_wall_s": round(meta["wall_s"]), "n_images": len(preds),
                      "ods": round(r.ods, 4), "ois": round(r.ois, 4), "ap": round(r.ap, 4),
                      "predict_s": round(t1 - t0, 1),
                      "eval_s": round(time.perf_counter() - t1, 1)}))


if __name__ == "__main__":
    main()
