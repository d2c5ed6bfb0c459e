"""The one exception type users see for bad input (it names the field and the fix), and how an
allocation failure is told apart from other errors."""

from __future__ import annotations

from typing import Optional


class ConfigError(ValueError):
    """Bad user input (a flag, a file, an argument). The message says what is wrong and how to fix it."""


class TrainingDiverged(ConfigError, FloatingPointError):
    """Training turned its losses non-finite: a learning rate too high for the data and model (or
    inputs of a scale the network cannot take). A `ConfigError`, since the fix is a setting; a
    `FloatingPointError`, so that a search (`latentmix tune`) records the trial as failed and goes
    on, and a run's plain CE twin that diverges leaves the run its own model."""


def out_of_memory_reason(error: BaseException) -> Optional[str]:
    """The first line of an allocation failure (CPU allocator, CUDA OOM, MemoryError) without
    torch's ``[enforce fail at ...]`` prefix; None for any other error."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if "can't allocate memory" in reason:
        return reason[reason.index("can't allocate memory"):][:200]
    if isinstance(error, MemoryError) or "out of memory" in reason.lower():
        return reason[:200]
    return None
