"""Shared fixtures and helpers for the tvcli test suite."""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def cuda_available() -> bool:
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow", action="store_true", default=False,
        help="also run tests marked slow (or set TVCLI_SLOW=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (long fuzz runs, trainings) run only when asked for."""
    if config.getoption("--runslow") or os.environ.get("TVCLI_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or TVCLI_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
