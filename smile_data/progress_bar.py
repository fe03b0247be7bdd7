"""Progress that reads well both on a terminal and in a log file.

On a terminal tqdm redraws one line in place with carriage returns. Redirected to a file
(`make pretrain > log`, a batch scheduler) those redraws pile up into one enormous line, so
there the same calls print a plain line every `LOG_INTERVAL_SECONDS` and once at the end:

    pretrain: 1200/20000 step (6.0%), 3.51 step/s, elapsed 05:42, left 1:29:13, loss=0.8123

`progress_bar` takes tqdm's own keywords, so a call site swaps `tqdm(` for `progress_bar(`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

from tqdm import tqdm

from smile_data.closing import ClosedOnExit

LOG_INTERVAL_SECONDS = 30.0  # between plain progress lines when output is not a terminal


def progress_bar(*, total: float | None = None, desc: str = "", unit: str = "it",
                 initial: float = 0, unit_scale: bool = False, disable: bool | None = False,
                 file: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
                 interval: float = LOG_INTERVAL_SECONDS, **tqdm_options: Any) -> tqdm | LogProgress:
    """A tqdm bar on a terminal, else a `LogProgress` with the same small interface.

    `disable=True` gives a silent bar; `disable=None` (tqdm's "only on a terminal") counts as
    enabled, because off a terminal the plain lines are what a log wants. `tqdm_options`
    (`mininterval`, `dynamic_ncols`, ...) only shape the terminal bar.
    """
    stream = sys.stderr if file is None else file  # read now: tests and CliRunner swap stderr
    if disable or _is_terminal(stream):
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale,
                    disable=bool(disable), file=stream, **tqdm_options)
    return LogProgress(total=total, desc=desc, unit=unit, initial=initial, unit_scale=unit_scale,
                       stream=stream, clock=clock, interval=interval)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LogProgress(ClosedOnExit):
    """Counts like a tqdm bar; prints one plain line per `interval` seconds and one at the end.

    Supports what the project's call sites use: `update(n)`, `set_postfix(...)`, `refresh()`,
    `close()`, a settable `total`, and `with`.
    """

    def __init__(self, *, total: float | None, desc: str, unit: str, initial: float,
                 unit_scale: bool, stream: TextIO, clock: Callable[[], float], interval: float):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.unit_scale, self.stream, self.clock, self.interval = unit_scale, stream, clock, interval
        self.initial = initial  # done before this run: left out of the rate
        self.started = self.last_line = clock()
        self.postfix = ""
        self.closed = False

    def update(self, n: float = 1) -> None:
        self.n += n
        self._line_if_due()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: Any) -> None:
        items = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{key}={value}" for key, value in items.items())
        self._line_if_due()

    def refresh(self) -> None:
        self._line_if_due()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write_line(self.clock())

    def _line_if_due(self) -> None:
        now = self.clock()
        if not self.closed and now - self.last_line >= self.interval:
            self._write_line(now)

    def _write_line(self, now: float) -> None:
        self.last_line = now
        self.stream.write(self.line(now) + "\n")
        self.stream.flush()

    def line(self, now: float) -> str:
        """desc: done/total unit (percent), rate, elapsed, time left, postfix."""
        elapsed = max(now - self.started, 0.0)
        done = (f"{self._number(self.n)}/{self._amount(self.total)}" if self.total is not None
                else self._amount(self.n))
        parts = [done + (f" ({100 * self.n / self.total:.1f}%)" if self.total else "")]
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else None
        parts.append(f"{'?' if rate is None else self._amount(rate)}/s")
        parts.append(f"elapsed {tqdm.format_interval(elapsed)}")
        if rate and self.total is not None and self.total > self.n:
            parts.append(f"left {tqdm.format_interval((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " * bool(self.desc) + ", ".join(parts)

    def _amount(self, value: float) -> str:
        """A count with its unit: "1200 step", "3.51 step", or scaled as "12.3MB"."""
        return self._number(value) + ("" if self.unit_scale else f" {self.unit}")

    def _number(self, value: float) -> str:
        if self.unit_scale:
            return tqdm.format_sizeof(value, suffix=self.unit)
        return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


ProgressBar = tqdm | LogProgress  # what `progress_bar` returns, for type hints at call sites
