"""The two-spiral data set of the paper's section II.D and Fig. 2.

The paper does not give its generator; ours (documented in docs/spiral.md):

* class c in {0, 1}; t ~ U(0, 1) and the angle ``phi = turns * 2 pi * sqrt(t)`` (the square root
  spreads the points evenly along the arm), radius ``r = phi / (2 pi)``, point
  ``(r cos(phi + c pi), r sin(phi + c pi))`` plus isotropic Gaussian noise of std `point_noise`;
* features: (x, y) and their polar coordinates (r, theta) with theta = atan2(y, x), so 4 inputs,
  standardised with the training set's mean and std;
* balanced classes: half of each split per arm; train and validation are independent draws from
  the same generator (seeded).

`turns` and `point_noise` are chosen so that plain cross-entropy with the paper's MLP reaches
roughly the paper's CE row (about 91-94% validation accuracy), not ~100%: the arms overlap a little
at their outer ends, so no method can be perfect and differences between methods can show.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from latentmix.data.dataset import Dataset
from latentmix.errors import ConfigError

DEFAULT_TURNS = 1.75
DEFAULT_POINT_NOISE = 0.15


def make_spiral_points(
    num_samples: int, *, turns: float = DEFAULT_TURNS, point_noise: float = DEFAULT_POINT_NOISE,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """`num_samples` points (x, y) of two interleaved spirals and their class (0/1), balanced."""
    labels = np.arange(num_samples) % 2
    angle = turns * 2.0 * math.pi * np.sqrt(rng.uniform(0.0, 1.0, num_samples))
    radius = angle / (2.0 * math.pi)
    rotated = angle + labels * math.pi
    points = np.stack([radius * np.cos(rotated), radius * np.sin(rotated)], axis=1)
    points += rng.normal(0.0, point_noise, size=points.shape)
    order = rng.permutation(num_samples)
    return points[order], labels[order]


def polar_features(points: np.ndarray) -> np.ndarray:
    """(x, y) -> (x, y, r, theta), theta = atan2(y, x) in (-pi, pi]."""
    x, y = points[:, 0], points[:, 1]
    return np.stack([x, y, np.hypot(x, y), np.arctan2(y, x)], axis=1)


def load_spiral(
    *, num_train: int = 1000, num_val: int = 1000, turns: float = DEFAULT_TURNS,
    point_noise: float = DEFAULT_POINT_NOISE, data_seed: int = 0,
) -> Dataset:
    """Train and validation spirals (1,000 samples each by default, as in the paper's Fig. 2).

    The data set is fixed by `data_seed` (default 0, the same for every run), independent of the
    training seed, so runs compare on the same points.
    """
    if num_train < 2 or num_val < 2:
        raise ConfigError(f"spiral sizes must be >= 2, got num_train={num_train}, num_val={num_val}")
    if turns <= 0 or point_noise < 0:
        raise ConfigError(f"spiral turns must be > 0 and point_noise >= 0, got {turns}, {point_noise}")
    rng = np.random.default_rng(data_seed)
    train_points, train_labels = make_spiral_points(num_train, turns=turns, point_noise=point_noise, rng=rng)
    val_points, val_labels = make_spiral_points(num_val, turns=turns, point_noise=point_noise, rng=rng)
    train_features, val_features = polar_features(train_points), polar_features(val_points)
    mean, std = train_features.mean(axis=0), train_features.std(axis=0)
    standardise = lambda features: torch.tensor((features - mean) / std, dtype=torch.float32)  # noqa: E731
    return Dataset(
        name="spiral",
        train_inputs=standardise(train_features),
        train_labels=torch.tensor(train_labels, dtype=torch.int64),
        val_inputs=standardise(val_features),
        val_labels=torch.tensor(val_labels, dtype=torch.int64),
        num_classes=2,
        info={"generator": "two interleaved spirals", "turns": turns, "point_noise": point_noise,
              "data_seed": data_seed, "num_train": num_train, "num_val": num_val,
              "features": ["x", "y", "r", "theta"]},
    )
