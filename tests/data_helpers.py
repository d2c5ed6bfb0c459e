"""Small noisy-label files that several tests train on."""

import numpy as np


def write_wide_gaussians(path):
    """Four Gaussian classes in 20 dimensions (a default MLP memorises them quickly), 800 training
    rows with 40% of the labels moved to another class, a clean test set of 400 as val_*; the
    .npz at `path`, returned."""
    rng = np.random.default_rng(5)
    means = rng.normal(0, 1.0, (4, 20))
    y = rng.integers(0, 4, 1200)
    x = (means[y] + rng.normal(0, 1.0, (1200, 20))).astype(np.float32)
    noisy = y.copy()
    flip = rng.random(800) < 0.4
    noisy[:800][flip] = (y[:800][flip] + rng.integers(1, 4, flip.sum())) % 4
    np.savez(path, features=x[:800], labels=noisy[:800], clean_labels=y[:800], val_features=x[800:],
             val_labels=y[800:])
    return path
