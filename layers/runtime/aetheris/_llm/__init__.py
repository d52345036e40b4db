"""Internals of ``aetheris.llm``: the price table, usage and result models, the scripted model."""
