"""benchmarks/label_views.py on a fabricated run folder: the AUC of each per-sample view kept in a
checkpoint, by hand."""

import pytest
import torch

from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def views_module():
    with benchmark_module("label_views") as module:
        yield module

def test_each_view_is_scored_against_the_truly_wrong_labels(tmp_path, views_module):
    # 4 samples, 1 and 3 wrong (3 held out); the label issues list them in the file's order
    rows = ["index,split,given_label,p_noisy,loss,predicted_label,truly_noisy",
            "0,train,0,0.1,0.1,0,0", "1,train,1,0.9,2.0,0,1", "2,train,0,0.2,0.2,0,0", "3,holdout,1,0.8,1.0,0,1"]
    (tmp_path / "label_issues.csv").write_text("\n".join(rows) + "\n")
    losses = torch.tensor([0.1, 2.0, 0.2, 1.0])
    torch.save({
        "label_snapshot": {"p_noisy": torch.tensor([0.1, 0.9, 0.2, 0.8]), "losses": losses},  # both wrong first: AUC 1
        "warmup_snapshot": {"p_noisy": torch.tensor([0.9, 0.1, 0.8, 0.2]), "losses": losses},  # both last: AUC 0
        # summed over 2 epochs: means 0.5, 0.5, 0.3, 0.5; ties broken by the loss: 1 (2.0), 3 (1.0), 0 (0.1), then 2
        "posterior_sums": {"epochs": 2, "p_noisy": torch.tensor([1.0, 1.0, 0.6, 1.0])},
        "tracked": {"losses": losses},
    }, tmp_path / "checkpoint.pt")
    assert views_module.run_views(tmp_path) == {"kept": 1.0, "warmup": 0.0, "all": 1.0}

def test_the_ranking_auc_counts_pairs_in_the_label_issues_order(views_module):
    # order by P(noisy): samples 2, 0, 3, 1; wrong: 0 and 1. Pairs (wrong ahead of right): 0 > 3
    # yes, 0 > 2 no, 1 > 2 no, 1 > 3 no: 1 of 4
    auc = views_module.ranking_auc(torch.tensor([0.6, 0.1, 0.9, 0.3]).numpy(), torch.zeros(4).numpy(),
                                   torch.tensor([True, True, False, False]).numpy())
    assert auc == pytest.approx(0.25)
