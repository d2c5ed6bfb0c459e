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


def three_noisy_classes(n, seed=0):
    """Three learnable classes in 6 features (feature 0 moves with the class), 30% of the labels
    redrawn to another class: (features, clean labels, noisy labels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 0] += 2.5 * y
    noisy = y.copy()
    flip = rng.random(n) < 0.3
    noisy[flip] = (y[flip] + 1 + rng.integers(0, 2, flip.sum())) % 3
    return x, y, noisy
