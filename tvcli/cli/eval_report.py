"""The report of a ``tvcli eval`` run: per-image rows and the data-set summary.

Shared by an unsharded evaluation (:mod:`tvcli.cli.eval`) and the merge of part
files (:mod:`tvcli.cli.eval_merge`), so that both compute the summary with the
same code: mean PSNR / SSIM over images, WRMSE / WMAE pooled over all pixels
(:func:`tvcli.metrics.pool_errors`), ODS / OIS / AP from the match counts.
"""

from __future__ import annotations

EDGE_METRICS = ("ods", "ois", "ap")

__all__ = ["EDGE_METRICS", "build_report", "summarize"]


def build_report(pred: str, gt: str, settings: dict, rows: list[dict], counts: list,
                 errors: list) -> dict:
    """The report (what --json prints) from evaluated rows (with their private
    ``_...`` fields, left in place) and the errors ``(name, message, order)``."""
    metrics = settings["metrics"]
    summary = summarize(rows, metrics, settings["data_range"], counts, settings["thresholds"])
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return {
        "pred": pred, "gt": gt, "metrics": metrics, "data_range": settings["data_range"],
        "units": {"psnr": "dB", "ssim": "1", "wrmse": "8-bit grey levels",
                  "wmae": "8-bit grey levels", "ods": "1", "ois": "1", "ap": "1"},
        "n_images": len(rows), "images": public, "summary": summary,
        "errors": [{"name": e[0], "error": e[1]} for e in errors],
    }


def summarize(rows: list[dict], metrics: list[str], data_range: float, counts: list,
              thresholds: int) -> dict:
    """Data-set values: mean PSNR / SSIM over images, WRMSE / WMAE pooled over
    all pixels as Zhu et al.'s script (root of the pooled weighted MSE), and
    ODS / OIS / AP."""
    out: dict = {}
    if not rows:
        return out
    n = len(rows)
    if "psnr" in metrics:
        out["psnr"] = sum(r["psnr"] for r in rows) / n
    if "ssim" in metrics:
        out["ssim"] = sum(r["ssim"] for r in rows) / n
    scale = 255.0 / data_range
    if "wrmse" in metrics or "wmae" in metrics:
        from tvcli.metrics import pool_errors

        wrmse, wmae = pool_errors([r["_wmse"] for r in rows], [r["_wmae"] for r in rows],
                                  [r["_npix"] for r in rows])
        if "wrmse" in metrics:
            out["wrmse"] = wrmse * scale
        if "wmae" in metrics:
            out["wmae"] = wmae * scale
    if counts:
        from tvcli.metrics import edge_aggregate

        res = edge_aggregate(counts, thresholds)
        for m in EDGE_METRICS:
            if m in metrics:
                out[m] = getattr(res, m)
        out["ods_threshold"] = res.ods_threshold
    return out
