"""The durable operations, one executor each, all of one shape (see ``base.py``)."""
