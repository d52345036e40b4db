"""Example agents hosted by the worker Lambda (``AETHERIS_APP: agents.support:app``).

``support`` is the refund agent (job ``support.refund``); ``model`` puts the LLM behind a small
protocol (scripted offline by default, Amazon Bedrock on request); ``tools`` holds the in-memory
fakes of the CRM, policy, payments and mail services it calls, which count every call per
idempotency key so that a demo or a test can prove what the outside world saw.
"""
