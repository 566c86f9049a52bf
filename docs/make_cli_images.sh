#!/usr/bin/env bash
# Regenerates the pictures in docs/img/ with the tvcli command line itself
# (the exact commands shown in docs/cli.md). Run from the repository root.
# The first three pictures show anisotropic TV (--tv aniso), the default when they
# were made; the default is now colour TV (docs/tv_variants.md).
set -euo pipefail
tvcli() { python -m tvcli "$@"; }

# Denoising: a noisy photograph, converged 2-D TV.
tvcli smooth examples/images/astronaut_noisy.png -o docs/img/astronaut_smooth.png \
    --lam 0.05 --tv aniso --overwrite --compare-out docs/img/astronaut_compare.png
# Cartoon / flat-colour look: a large lam.
tvcli smooth examples/images/coffee.png -o docs/img/coffee_cartoon.png \
    --lam 0.5 --tv aniso --overwrite --compare-out docs/img/coffee_compare.png
# Sharpening: 2 x - prox(x).
tvcli sharpen examples/images/camera.png -o docs/img/camera_sharp.png \
    --lam 0.05 --tv aniso --overwrite --compare-out docs/img/camera_compare.png
# Exact 1-D TV along rows only (streaks show the direction).
tvcli smooth examples/images/camera.png -o docs/img/camera_rows.png \
    --mode rows --lam 0.3 --overwrite --compare-out docs/img/camera_rows_compare.png
