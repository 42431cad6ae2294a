"""Data-parallel runs under torchrun: see probeheat/distributed.py (shared with `probe`)."""

from ..distributed import Dist

__all__ = ["Dist"]
