"""The one way this project's resources (open videos, remote streams, progress lines) close at
the end of a `with` block."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self


class ClosedOnExit(ABC):
    """Use as a context manager: `with` gives the object itself and calls its close() on the
    way out, error or not."""

    @abstractmethod
    def close(self) -> None:
        """Release what the object holds."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
