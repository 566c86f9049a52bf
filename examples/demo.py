"""A first look at tvcli: denoise noisy 1-D signals and take gradients.

Run with ``make demo`` (sets everything up) or ``python examples/demo.py``.
"""

from __future__ import annotations

import time

import torch

import tvcli


def main() -> None:
    torch.manual_seed(0)
    # 8192 noisy unit steps of length 32: the paper's Table 1 workload.
    clean = (torch.arange(32) >= 16).float().expand(8192, 32)
    noisy = clean + 0.1 * torch.randn(8192, 32)

    t0 = time.perf_counter()
    smooth = tvcli.prox_tv1d(noisy, lam=0.3)
    ms = (time.perf_counter() - t0) * 1e3
    rmse = lambda a: float((a - clean).pow(2).mean().sqrt())  # noqa: E731
    print(f"engine: {tvcli.built_backends() or ['pure-PyTorch fallback']}")
    print(f"denoised 8192 signals of length 32 in {ms:.1f} ms")
    print(f"RMSE to the clean step: noisy {rmse(noisy):.4f} -> TV prox {rmse(smooth):.4f}")
    print("one signal, noisy :", " ".join(f"{v:+.2f}" for v in noisy[0, 12:20].tolist()))
    print("one signal, prox  :", " ".join(f"{v:+.2f}" for v in smooth[0, 12:20].tolist()))

    # Differentiable in the input and in lam: learn lam by gradient descent.
    lam = torch.tensor(0.02, requires_grad=True)
    opt = torch.optim.Adam([lam], lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        loss = (tvcli.prox_tv1d(noisy[:512], lam) - clean[:512]).pow(2).mean()
        loss.backward()
        opt.step()
    print(f"lam learned to minimise the error: {lam.item():.3f} (loss {loss.item():.5f})")


if __name__ == "__main__":
    main()
