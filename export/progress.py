"""Progress over the export's steps: a tqdm bar on stderr, and the seconds each step took."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ftedge.errors import raise_if_terminated


class StepProgress:
    """A tqdm bar over pipeline steps (stderr); the description names the current step."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar: Any = None
        self.seconds: dict[str, float] = {}
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc="export",
                unit="step",
                leave=False,
                bar_format="{desc:<40} {n_fmt}/{total_fmt} [{elapsed}]",
            )

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step ``name`` and advance the bar when it ends; a SIGTERM that
        a library swallowed is raised again before and after (``raise_if_terminated``)."""
        raise_if_terminated()
        if self.bar is not None:
            self.bar.set_description_str(name)
        t = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t, 2)
        if self.bar is not None:
            self.bar.update(1)
        raise_if_terminated()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
