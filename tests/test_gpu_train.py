"""The GPU training job runner's CPU dry run, its data pack and safetensors I/O."""

from __future__ import annotations

import json
import lzma
import tarfile

import pytest
import torch

from tvcli._safetensors import load_file_pure, save_file_pure
from tvcli.datapack import read_pack, write_pack


def test_pure_safetensors_matches_the_library(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    g = torch.Generator().manual_seed(0)
    ts = {"w": torch.randn(3, 4, generator=g), "b": torch.arange(5, dtype=torch.int64),
          "r": torch.randint(0, 255, (7,), dtype=torch.uint8, generator=g),
          "h": torch.randn(2, 2, generator=g).to(torch.bfloat16), "e": torch.zeros(0)}
    save_file_pure(ts, str(tmp_path / "a.safetensors"), {"k": "v"})
    st.save_file(ts, str(tmp_path / "b.safetensors"), {"k": "v"})
    for got in (st.load_file(str(tmp_path / "a.safetensors")),
                load_file_pure(str(tmp_path / "b.safetensors")),
                load_file_pure(str(tmp_path / "a.safetensors"))):
        assert set(got) == set(ts)
        for k, v in ts.items():
            assert got[k].dtype == v.dtype and torch.equal(got[k], v)


def test_pack_roundtrip_and_corruption(tmp_path):
    g = torch.Generator().manual_seed(1)
    arrays = {"train": torch.randint(0, 256, (2, 3, 9, 11), dtype=torch.uint8, generator=g),
              "test/x/a": torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8, generator=g)}
    write_pack(tmp_path / "p.pack", arrays, {"name": "t"})
    meta, got = read_pack(tmp_path / "p.pack")
    assert meta["name"] == "t" and all(torch.equal(got[k], v) for k, v in arrays.items())
    raw = bytearray((tmp_path / "p.pack").read_bytes())
    raw[-40] ^= 0xFF  # flip a byte of the last compressed stream
    (tmp_path / "q.pack").write_bytes(bytes(raw))
    with pytest.raises((ValueError, lzma.LZMAError)):  # lzma's own check (LZMAError) or the digest
        read_pack(tmp_path / "q.pack")


def test_gpu_train_dry_run(tmp_path):
    from tvcli.gpu_train import JOBS, main

    main(["run", "--dry-run", "--out", str(tmp_path / "out")])
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "results.json", "results.md",
                                                     "weights.tar"]
    res = json.loads((out / "results.json").read_text())
    assert set(res["jobs"]) == {j.name for j in JOBS}
    with tarfile.open(out / "weights.tar") as tar:
        names = tar.getnames()
        man = json.loads(tar.extractfile("weights/manifest.json").read())
    assert len(names) == len(JOBS) + 1
    assert {e["file"] for e in man["weights"]} == {f"{j.name}.safetensors" for j in JOBS}
    for j in JOBS:  # every job evaluated on both test sets at its sigmas, both conventions
        assert len(res["jobs"][j.name]["test"]) == 2 * 2 * len(j.eval_sigmas)
