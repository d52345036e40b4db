"""Big recorded values live in S3; the DynamoDB attribute keeps a small reference to them.

Every recorded value is stored as text: compact JSON, or — when it is over
``Settings.offload_threshold_bytes`` and a payload bucket is configured — a reference to an S3
object holding that JSON. ``offload`` puts the object *before* the caller writes the reference
(a committed reference always points at an existing object); ``text`` turns a stored text back
into JSON, fetching and checking the object when it is a reference.

The reference is ``@s3`` followed by a compact JSON object (bucket, key, bytes, sha256). JSON text
as pydantic dumps it never starts with ``@`` (only ``{ [ " -``, a digit, ``t``, ``f`` or ``n``), so
no user value can be mistaken for a reference and none needs escaping; every text stored before
the offload existed reads back unchanged. A marker *inside* JSON (``{"$ref": ...}``) was rejected:
a user value of the same shape would have to be refused or escaped. A NUL-prefixed sentinel was
rejected too: it is unreadable in the console and in exported item dumps.

The key is ``{job_id}/{sha256}.json``: content-addressed, so a put retried after a throttle or a
crash writes the same bytes to the same key, and a retried start or signal finds its own object.
An object whose reference never got committed is no leak beyond retention: the bucket's
lifecycle rule expires every object after the jobs' retention period.

Objects are immutable under their content-addressed key, so resolved texts are cached (bounded
by size): a warm worker replaying a job does not fetch the same value on every tick.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from aetheris.errors import PayloadCorrupted

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from aetheris.config import Settings

MARKER = "@s3"
# The attributes of stored items (job, event, ledger, inbox) that hold a recorded value.
RECORDED_ATTRIBUTES = ("input", "result", "payload")
# Small against a worker's memory: enough to keep a job's big values across its ticks.
_CACHE_BYTES = 16 * 1024 * 1024


class PayloadRef(BaseModel):
    """Where an offloaded value lives and what it must hash to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: str
    key: str
    bytes: int
    sha256: str

    def stored(self) -> str:
        return MARKER + self.model_dump_json()

    @classmethod
    def parse(cls, text: str) -> PayloadRef | None:
        """The reference ``text`` holds, or ``None`` if it is plain JSON."""
        if not text.startswith(MARKER):
            return None
        return cls.model_validate_json(text[len(MARKER) :])


def is_reference(text: object) -> bool:
    return isinstance(text, str) and text.startswith(MARKER)


class Payloads:
    """Offloads big texts to the payload bucket and resolves references back to JSON text."""

    def __init__(
        self,
        s3: S3Client | None,
        bucket: str | None,
        *,
        offload_threshold: int,
        max_inline: int,
        max_offloaded: int,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.offload_threshold = offload_threshold
        self.max_inline = max_inline
        self.max_offloaded = max_offloaded
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cached_bytes = 0

    @classmethod
    def from_settings(cls, settings: Settings, s3: S3Client | None) -> Payloads:
        return cls(
            s3,
            settings.payload_bucket,
            offload_threshold=settings.offload_threshold_bytes,
            max_inline=settings.max_payload_bytes,
            max_offloaded=settings.max_offloaded_bytes,
        )

    @classmethod
    def inline_only(cls) -> Payloads:
        """For documents that hold real values (exported histories): a reference there is an error."""
        return cls(None, None, offload_threshold=0, max_inline=1 << 62, max_offloaded=0)

    @property
    def limit(self) -> int:
        """The largest value that can be recorded: the offload cap with a bucket, else the inline cap."""
        return self.max_offloaded if self.bucket else self.max_inline

    def offload(self, job_id: str, text: str, *, always: bool = False) -> str:
        """The text to store for ``text``: itself when small, else a reference to a fresh S3 object.

        ``always`` offloads whatever the size (when there is a bucket): for a text that is kept
        beside a bounded copy of itself, e.g. an error's full message.

        The caller has checked ``text`` against ``limit`` (``_serde.dump``). S3 errors propagate as
        botocore errors (under the job function the caller wraps this in ``runtime_io``: a failed
        put retries the tick).
        """
        data = text.encode()
        if self.bucket is None or self.s3 is None or (len(data) <= self.offload_threshold and not always):
            return text
        digest = hashlib.sha256(data).hexdigest()
        ref = PayloadRef(bucket=self.bucket, key=f"{job_id}/{digest}.json", bytes=len(data), sha256=digest)
        self.s3.put_object(
            Bucket=ref.bucket,
            Key=ref.key,
            Body=data,
            ContentType="application/json",
            ChecksumSHA256=_b64(digest),
        )
        stored = ref.stored()
        self._remember(stored, text)
        return stored

    def text(self, stored: str | None) -> str | None:
        """The JSON text ``stored`` stands for (fetched and checked when it is a reference)."""
        if stored is None:
            return None
        ref = PayloadRef.parse(stored)
        if ref is None:
            return stored
        cached = self._cache.get(stored)
        if cached is not None:
            self._cache.move_to_end(stored)
            return cached
        if self.s3 is None:
            raise PayloadCorrupted(
                ref.bucket, ref.key, "a reference, and this runtime has no payload bucket to read it from"
            )
        try:
            data = self.s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
        except ClientError as error:
            # S3 is strongly consistent: a committed reference's object was written before it, so
            # a missing one was deleted or expired (lifecycle). Terminal, not a retry storm.
            if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            raise PayloadCorrupted(
                ref.bucket, ref.key, "no object (deleted, or expired by the bucket's lifecycle rule)"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != ref.sha256 or len(data) != ref.bytes:
            raise PayloadCorrupted(
                ref.bucket,
                ref.key,
                f"{len(data)} bytes with sha256 {digest}, expected {ref.bytes} bytes "
                f"with sha256 {ref.sha256}",
            )
        text = data.decode()
        self._remember(stored, text)
        return text

    def resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` with every recorded value it holds resolved to JSON text (what readers see)."""
        refs = [name for name in RECORDED_ATTRIBUTES if is_reference(item.get(name))]
        if not refs:
            return item
        return {**item, **{name: self.text(item[name]) for name in refs}}

    def json(self, stored: str | None) -> object:
        """The value ``stored`` stands for, as plain JSON (``None`` for nothing stored)."""
        text = self.text(stored)
        return None if text is None else json.loads(text)

    def _remember(self, stored: str, text: str) -> None:
        size = len(text)
        if size > _CACHE_BYTES // 4:
            return
        self._cache[stored] = text
        self._cached_bytes += size
        while self._cached_bytes > _CACHE_BYTES:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= len(dropped)


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()
