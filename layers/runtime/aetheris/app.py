"""``App``: the registry of job definitions a deployment hosts, several versions side by side."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import TypeAdapter

from aetheris import _serde
from aetheris._engine import guard
from aetheris.errors import UnknownJobType

if TYPE_CHECKING:
    from aetheris._engine.job_context import JobContext
    from aetheris.budget import Budget

JobFn = TypeVar("JobFn", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobDefinition:
    name: str
    version: str
    fn: Callable[[JobContext, Any], Any]
    input: TypeAdapter[Any]
    output: TypeAdapter[Any]
    budget: Budget | None = None  # limits of each job's model calls (aetheris.budget)


class App:
    """A named set of jobs. ``@app.job("refund", version="1")`` registers a job function."""

    def __init__(self, name: str, *, strict_effects: bool = False) -> None:
        """``strict_effects``: a step that opens a network connection outside ``sctx.tool`` fails
        (``UntrackedEffect``) instead of being reported with a warning in its outcome event."""
        self.name = name
        self.strict_effects = strict_effects
        self._jobs: dict[tuple[str, str], JobDefinition] = {}
        self._latest: dict[str, str] = {}

    def job(
        self, name: str | None = None, *, version: str = "1", budget: Budget | None = None
    ) -> Callable[[JobFn], JobFn]:
        def register(fn: JobFn) -> JobFn:
            if (
                inspect.isgeneratorfunction(fn)
                or inspect.isasyncgenfunction(fn)
                or inspect.iscoroutinefunction(fn)
            ):
                raise TypeError(
                    f"job function {fn.__qualname__} is a generator or async function; a job function is "
                    f"plain orchestration code (replayed from the top): make its steps async instead"
                )
            guard.protect(fn)
            job_name = name or fn.__name__
            if (job_name, version) in self._jobs:
                raise ValueError(f"job {job_name!r} version {version!r} is already registered in {self.name}")
            self._jobs[(job_name, version)] = JobDefinition(
                job_name, version, fn, _serde.input_adapter(fn), _serde.return_adapter(fn), budget
            )
            self._latest[job_name] = version
            return fn

        return register

    def get(self, job_type: str, version: str | None = None) -> JobDefinition:
        """The definition of ``job_type`` at ``version`` (default: the latest registered)."""
        chosen = version or self._latest.get(job_type)
        definition = self._jobs.get((job_type, chosen)) if chosen else None
        if definition is None:
            known = [f"{n}@{v}" for n, v in sorted(self._jobs)]
            raise UnknownJobType(job_type if version is None else f"{job_type}@{version}", known)
        return definition

    @property
    def job_types(self) -> list[str]:
        return sorted(self._latest)
