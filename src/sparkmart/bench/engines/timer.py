"""Wall-clock timing of an engine's steps, with the wall times the runner matches to memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field


@dataclass
class StepTime:
    step: str
    seconds: float
    started: float  # time.time() at the start: the runner finds the step's peak RSS with it
    ended: float


@dataclass
class StepTimer:
    """``with timer.step("prepare"): ...`` records how long each step took."""

    steps: list[StepTime] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        wall, started = time.time(), time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self.steps.append(StepTime(name, seconds, wall, wall + seconds))

    def as_records(self) -> list[dict[str, object]]:
        return [asdict(s) for s in self.steps]
