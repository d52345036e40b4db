"""A job's recorded history as a portable document: what ``aetheris export`` writes and
``aetheris replay --file`` and ``aetheris.testing.replay`` read (golden histories are these files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from aetheris.events import Event
from aetheris.runtime import JobView

FORMAT: Literal["aetheris.history/1"] = "aetheris.history/1"


class JobHistory(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: Literal["aetheris.history/1"] = FORMAT
    job: JobView
    input: Any  # the job's input as recorded (JSON)
    events: list[Event]

    @classmethod
    def load(cls, source: str | Path | dict[str, Any]) -> JobHistory:
        if isinstance(source, dict):
            return cls.model_validate(source)
        return cls.model_validate_json(Path(source).read_text())

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")

    @property
    def input_json(self) -> str:
        return json.dumps(self.input)
