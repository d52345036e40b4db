"""Kept for existing imports: bootstrap lives in the library (``aetheris._local.bootstrap``)."""

from aetheris._local.bootstrap import BootstrapError, StackResources, bootstrap

__all__ = ["BootstrapError", "StackResources", "bootstrap"]
