"""Training and validation images for tvcli's denoisers, and how they are made."""

from tvcli.data.recipe import SOURCES, Source, fetch_dataset, manifest_digest

__all__ = ["SOURCES", "Source", "fetch_dataset", "manifest_digest"]
