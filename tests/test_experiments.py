"""Grids and their rows: `row_label` names every table row (reproduce tables, sweep store, report)."""

from latentmix.experiments import Grid, GridMethod, spiral_table2_grid
from latentmix.naming import row_label
from latentmix.experiments.cifar import cifar10_table1_grid


def test_row_label_names_method_and_overridden_layers():
    assert row_label("ce") == "ce"
    assert row_label("lr-m", "1,2,3") == "lr-m(1-3)"  # a layer list written as the range it is
    assert row_label("lr-m", "1,5") == "lr-m(1,5)"
    assert row_label("lr-m", "x-y") == "lr-m(x-y)"  # unreadable layers (a hand-edited config): as written


def test_spiral_input_mixup_is_m_0_0_on_the_spirals_only():
    assert row_label("m", None, "spiral") == "m(0-0)"
    assert row_label("m", None, "cifar10") == "m"
    assert row_label("m") == "m"
    assert row_label("m-dyr-h", None, "spiral") == "m-dyr-h"


def test_grid_rows_follow_its_methods():
    rows = spiral_table2_grid(seeds=1).rows()
    assert rows[:3] == ["ce", "m(0-0)", "lr-m(0-1)"] and rows[-1] == "lr-m(4-5)" and len(rows) == 17
    assert cifar10_table1_grid(seeds=1).rows() == ["ce", "m", "m-dyr-s", "m-dyr-h", "lr-m-dyr-h"]
    grid = Grid(name="g", dataset="fashion-mnist", methods=(GridMethod("m"), GridMethod("lr-m-dyr-h", "1-3")),
                noise_rates=(0.2,), seeds=(0,))
    assert grid.rows() == ["m", "lr-m-dyr-h(1-3)"]
