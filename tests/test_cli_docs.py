"""The command line's help texts and docs/cli.md against what is actually shipped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tvcli.cli import app

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["smooth", "sharpen", "run", "eval", "bench", "info", "train", "models",
            "data"]


def _help(*args: str, width: int = 200) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(width),
                                                               "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


def _expected_trained_for(entry: dict) -> str:
    """What the docs table says a manifest entry was trained for."""
    if entry.get("sigma_range"):
        lo, hi = entry["sigma_range"]
        return f"σ {lo:g}-{hi:g}"
    if entry.get("sigma") is not None:
        return f"σ {entry['sigma']:g}"
    return {"classify": "CIFAR-10 classes", "edges": "BSDS500 edges",
            "eps": "edge-preserving smoothing",
            "wsol": "localization (synthetic WSOL)"}[entry["task"]]


def test_docs_list_of_shipped_weights_matches_the_manifest():
    manifest = json.loads((ROOT / "weights" / "manifest.json").read_text())
    expected = {(e["model"], e["file"], _expected_trained_for(e))
                for e in manifest["weights"]}
    text = (ROOT / "docs" / "cli.md").read_text()
    block = re.search(r"<!-- shipped-weights:begin -->(.*?)<!-- shipped-weights:end -->",
                      text, re.S)
    assert block, "docs/cli.md has no shipped-weights table"
    rows = [line.strip().strip("|").split("|") for line in block.group(1).splitlines()
            if line.startswith("|") and not line.startswith("| ---")][1:]  # no header
    listed = {tuple(cell.strip() for cell in row) for row in rows}
    assert listed == expected, (f"missing from docs: {sorted(expected - listed)}; "
                                f"not shipped: {sorted(listed - expected)}")
    # and the prose must not contradict it
    assert "No EPS weights are shipped" not in text
    assert "σ = 25 and 50 are shipped" not in text


def test_readme_states_the_set_up_download_and_time():
    readme = (ROOT / "README.md").read_text()
    assert "about 1 GB" in readme and "3-5 minutes" in readme


@pytest.mark.parametrize("command", COMMANDS)
def test_help_texts_have_no_stray_markup_or_bool_metavar(command):
    text = _help(command)
    assert "<bool>" not in text  # flags take no value
    # "[default: ...]" in an option text is eaten by rich markup, leaving " ."
    assert not re.search(r"\s\.(\s|$)", text), re.findall(r".{30}\s\.", text)


def test_root_help_has_no_bool_metavar():
    assert "<bool>" not in _help()


def test_command_help_paragraphs_are_not_hard_wrapped():
    """A docstring's single newlines are kept by Typer's rich mode, so `tvcli run
    --help` broke mid-sentence on a narrow terminal; every help is now one line per
    paragraph (rich wraps it to the terminal)."""

    def infos(typer_app):
        for info in typer_app.registered_commands:
            yield info.name or info.callback.__name__, info.help
        for group in typer_app.registered_groups:
            yield from infos(group.typer_instance)

    seen = dict(infos(app))
    assert {"run", "smooth", "train"} <= set(seen)
    for name, text in seen.items():
        assert text, f"{name} has no help"
        for para in text.split("\n\n"):
            assert "\n" not in para, (name, para)


@pytest.mark.parametrize("width", [100, 120])
def test_run_help_paragraphs_are_wrapped_to_the_terminal(width):
    """Every line of a paragraph but its last is nearly full: the docstring's own
    line breaks used to cut sentences short ('...where the format can hold' /
    'them; not kept: ...')."""
    text = _help("run", width=width)
    intro = text.split("╭")[0]  # the description, before the option panels
    paragraphs = [p for p in re.split(r"\n\s*\n", intro) if "Usage:" not in p]
    assert len(paragraphs) >= 3
    for para in paragraphs:
        lines = [line.rstrip() for line in para.splitlines() if line.strip()]
        short = [line for line in lines[:-1] if len(line) < width - 25]
        assert not short, short
