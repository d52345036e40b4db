"""Kept for existing imports: the serial moto server lives in ``aetheris._local.moto_server``."""

from aetheris._local.moto_server import SerialMotoServer

__all__ = ["SerialMotoServer"]
