"""The training side of tvcli, kept apart from the engine and image tool.

- :mod:`tvcli.learning.train`: the loop (config, checkpoints, distributed data
  parallel, export to safetensors, the GPU job runner and its data packs).
- :mod:`tvcli.learning.tasks`: one module per task of the paper (denoising,
  edge-preserving smoothing, edge detection, classification, weakly supervised
  localization), each owning its data, loss, validation and scoring.

Nothing in the engine (``tvcli.prox*``, ``tvcli.nn``, ``tvcli.io``,
``tvcli.metrics``) imports from here; ``tests/test_layout.py`` checks it.
"""
