"""The embedded stack's pieces: resource definitions, bootstrap, SQS event source, Lambda event shapes.

Used by ``aetheris.testing.LocalRuntime`` and by ``aetheris dev``; they need only boto3, except
``moto_server`` and the in-process backend, which need the ``local`` extra (``aetheris[local]``:
moto). Nothing here is imported by the handlers, so the Lambda layer never loads it.
"""
