"""A run's progress, one epoch at a time: a bar on a terminal, lines in a log.

On a terminal a tqdm bar redraws one line in place. Where standard error is not a terminal (a log
file, ``nohup``, a job scheduler) a bar would write a line of escape codes per redraw, and no bar
at all leaves a 15-minute run silent until it ends. There, as Lightning's and Keras' loggers do
without a terminal, `EpochProgress` prints one plain line per epoch: the epoch, the training loss,
the validation accuracy, the learning rate and whether the loss correction (bootstrapping) is on,
and the seconds since the start. Short epochs would flood the log (a 300-epoch spiral run takes
seconds), so a line comes at most every `min_interval_s` seconds, and always for the first and the
last epoch.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TextIO

# at most one log line per this many seconds (the first and the last epoch always print)
DEFAULT_MIN_INTERVAL_S = 10.0


class EpochProgress:
    """Iterate over a run's epochs, reporting each one's row (`epoch_done`).

    Args:
        epochs: the epochs to run (e.g. ``range(start, last + 1)``).
        enabled: False: silent (``--quiet``, or a process that is not the main one).
        desc: what is training, the head of each line (``"lr-m-dyr-h noise=0.2 seed=0"``).
        corrects: whether the method has a loss correction (then each line says on / off).
        stream: where to report (default: standard error, read when iterating starts).
        min_interval_s: the least time between two log lines (no effect on a terminal's bar).
        clock: seconds, monotonic (a test passes its own).
    """

    def __init__(self, epochs: Iterable[int], *, enabled: bool = True, desc: str = "", corrects: bool = False,
                 stream: Optional[TextIO] = None, min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.epochs = list(epochs)
        self.enabled = enabled
        self.desc = desc
        self.corrects = corrects
        self.stream = stream
        self.min_interval_s = float(min_interval_s)
        self.clock = clock
        self._bar = None
        self._started: Optional[float] = None
        self._last_line: Optional[float] = None

    def __iter__(self) -> Iterator[int]:
        if not self.enabled:
            yield from self.epochs
            return
        stream = self.stream if self.stream is not None else sys.stderr
        self.stream = stream
        self._started = self.clock()
        if is_terminal(stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(self.epochs, desc=self.desc, unit="epoch", leave=False, dynamic_ncols=True, file=stream)
            yield from self._bar
            return
        yield from self.epochs

    def epoch_done(self, row: dict) -> None:
        """Report one finished epoch's metrics row (``epoch``, ``train_loss``, ``val_acc``, ``lr``,
        ``bootstrapping``): the bar's postfix on a terminal, else a log line when one is due."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix(val_acc=f"{row['val_acc']:.4f}", loss=f"{row['train_loss']:.3f}")
            return
        now = self.clock()
        if self.line_due(int(row["epoch"]), now):
            self._last_line = now
            print(self.line(row, now - (self._started if self._started is not None else now)), file=self.stream,
                  flush=True)

    def line_due(self, epoch: int, now: float) -> bool:
        """Whether the epoch gets a log line: the first and the last epoch always, any other once
        `min_interval_s` has passed since the last line."""
        if self._last_line is None or not self.epochs or epoch == self.epochs[-1]:
            return True
        return now - self._last_line >= self.min_interval_s

    def line(self, row: dict, elapsed_s: float) -> str:
        """One epoch as a log line, e.g. ``lr-m-dyr-h noise=0.2 seed=0: epoch 3/20, loss 0.4123,
        val acc 0.8533, lr 0.05, correction off, 12 s``."""
        last = self.epochs[-1] if self.epochs else row["epoch"]
        parts = [f"epoch {row['epoch']}/{last}", f"loss {row['train_loss']:.4f}", f"val acc {row['val_acc']:.4f}",
                 f"lr {row['lr']:.3g}"]
        if self.corrects:
            parts.append(f"correction {'on' if row.get('bootstrapping') else 'off'}")
        parts.append(f"{elapsed_s:.0f} s")
        head = f"{self.desc}: " if self.desc else ""
        return head + ", ".join(parts)


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is an interactive terminal (a closed or odd stream counts as not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
