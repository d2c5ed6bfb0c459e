"""Experiments are data: a `Grid` declares the runs of a table; runners execute them.

A grid is the product of methods (each a preset name plus an optional layer range), noise rates
and seeds over one data set with shared run settings. `Grid.runs()` lists the `RunConfig`s; each
has a stable `run_id` used as its folder name and as its key in the sweep store, so an interrupted
grid resumes without redoing finished runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence

from latentmix.config import RunConfig
from latentmix.naming import row_label


@dataclass(frozen=True)
class GridMethod:
    """One row of a table: a method preset, optionally with its layers overridden."""

    method: str
    layers: Optional[str] = None


@dataclass(frozen=True)
class Grid:
    name: str
    dataset: str
    methods: tuple[GridMethod, ...]
    noise_rates: tuple[float, ...]
    seeds: tuple[int, ...]
    base: RunConfig = field(default_factory=RunConfig)
    # rates of class-dependent noise (`--noise-kind asymmetric`, the data set's class map), run
    # beside the symmetric `noise_rates`
    asymmetric_rates: tuple[float, ...] = ()

    def noise_settings(self) -> list[tuple[str, float]]:
        """The table's columns: (noise kind, rate), symmetric first."""
        return ([("symmetric", rate) for rate in self.noise_rates]
                + [("asymmetric", rate) for rate in self.asymmetric_rates])

    def rows(self) -> list[str]:
        """The table's rows, one per method, in the grid's order (`row_label`)."""
        return [row_label(m.method, m.layers, self.dataset) for m in self.methods]

    def runs(self) -> list[RunConfig]:
        return [
            replace(self.base, dataset=self.dataset, method=m.method, layers=m.layers, noise=noise, noise_kind=kind,
                    seed=seed)
            for m in self.methods for kind, noise in self.noise_settings() for seed in self.seeds
        ]


# --------------------------------------------------------------------------------------------
# The paper's grids
# --------------------------------------------------------------------------------------------

SPIRAL_RANGES = tuple(f"{low}-{high}" for low in range(5) for high in range(low + 1, 6))  # 0-1 .. 4-5


def spiral_table2_grid(seeds: int = 3, epochs: Optional[int] = None, alpha: Optional[float] = None,
                       noise_rates: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4)) -> Grid:
    """Paper Table 2: CE, input mixup M(0-0) and LR-M over every range 0-1 .. 4-5, at 0-40% noise."""
    methods = (GridMethod("ce"), GridMethod("m")) + tuple(
        GridMethod("lr-m", layers=r) for r in SPIRAL_RANGES
    )
    return Grid(
        name="spiral-table2", dataset="spiral", methods=methods, noise_rates=tuple(noise_rates),
        seeds=tuple(range(seeds)),
        base=RunConfig(dataset="spiral", epochs=epochs, alpha=alpha, checkpoint=False, track_every=10),
    )
