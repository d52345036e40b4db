"""Moved into the library (``aetheris._local.moto_speedups``); kept so existing imports work."""

from aetheris._local.moto_speedups import *  # noqa: F403
from aetheris._local.moto_speedups import install

__all__ = ["install"]
