"""Strict JSON for `--json` outputs: shells and jq reject NaN / Infinity."""

from __future__ import annotations

import json
import math


def json_safe(obj: object) -> object:
    """Copy of ``obj`` with every non-finite float replaced by None (JSON null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def dumps(obj: object) -> str:
    """``json.dumps`` that never writes NaN or Infinity (they become null)."""
    return json.dumps(json_safe(obj), indent=1, allow_nan=False, default=str)
