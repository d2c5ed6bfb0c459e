"""Would combining epochs give a better label-issue ranking than one epoch's P(noisy)?

A probe for docs/robust-defaults.md, not a library feature: it trains exactly what
benchmarks/robust_defaults.py trains (`latentmix train --data FILE --method M --val-split 0.1`
on the same generated / Fashion-MNIST files), keeps every epoch's per-sample P(noisy) and loss
(by wrapping `epoch_view` where `latentmix.training` calls it), and scores against the flipped labels:

  * kept     - the epoch `train` keeps for label_issues.csv (best noisy-validation accuracy);
  * mean-p   - P(noisy) averaged over epochs 1 .. the kept epoch;
  * mean-p-3 - the same from epoch 3 on (the first epochs' mixture fits are rough);
  * mean-p-learnt - the same from the first epoch whose noisy-validation accuracy tells the
               network apart from chance (`latentmix.selection.learnt_from`): the run's own rule
               since 2026-12-07;
  * stored   - the run's own P(noisy), as label_issues.csv ranks it: mean-p-learnt, except in a run
               that trains plainly from the end of early learning, whose mean restarts there
               (`RunLog.restart_posterior_mean`);
  * rank     - each epoch's loss rank (0..1) averaged over epochs 1 .. the kept epoch, the
               "training dynamics" scores of Pleiss et al. 2020 (AUM) and Swayamdipta et al.
               2020 (data maps) in their simplest form;
  * all-p    - P(noisy) averaged over every epoch (looks past the kept epoch);
  * oracle   - the run's best single epoch (needs the clean labels to pick).

    python benchmarks/label_epoch_combine.py --data fmnist:1000,fmnist:4000,gen:1000,gen:4000 \
        --noise 0.2,0.4,0.6 --seeds 2 --epochs 50 --out benchmarks/results/label-epoch-combine-learnt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_defaults  # noqa: E402 - the grid's data files and settings

RULES = ("kept", "mean-p", "mean-p-3", "mean-p-learnt", "stored", "rank", "all-p", "oracle")


def probe(path: Path, method: str, epochs: int, seed: int, run_dir: Path) -> dict:
    import torch

    import latentmix.training as training
    from latentmix.noise_model import detection_metrics
    from latentmix.config import RunConfig
    from latentmix.selection import learnt_from
    from latentmix.training import chance_level, train

    torch.set_num_threads(1)
    views, epochs_seen = [], []
    original = training.epoch_view

    def recording(tracked, noise_model, trained, val_tracked):
        view = original(tracked, noise_model, trained, val_tracked)
        views.append((view["p_noisy"].numpy().copy(), view["losses"].numpy().copy()))
        return view

    def on_epoch_end(row):
        if len(views) > len(epochs_seen):
            epochs_seen.append(int(row["epoch"]))

    training.epoch_view = recording
    try:
        config = RunConfig(dataset=path.stem, data=str(path), method=method, epochs=epochs, seed=seed, val_split=0.1)
        result = train(config, run_dir=run_dir, progress=False, overwrite=True, on_epoch_end=on_epoch_end)
    finally:
        training.epoch_view = original
    data = np.load(path)
    truth = data["labels"] != data["clean_labels"]
    trained = ~result.holdout
    p = np.stack([v[0] for v in views])[:, trained]
    ranks = np.stack([np.argsort(np.argsort(v[1][trained])) / max(trained.sum() - 1, 1) for v in views])
    kept = epochs_seen.index(result.label_issues_epoch)

    def auc(score):
        return float(detection_metrics(score, truth[trained])["auc"])

    start3 = min(2, kept)
    # the selection split's chance level and size, as the run reads them (`training.selection_signal`)
    held = torch.as_tensor(np.asarray(result.noisy_labels)[result.holdout])
    first = learnt_from(result.metrics, holdout_size=len(held), chance=chance_level(held))
    learnt = [i for i, epoch in enumerate(epochs_seen[:kept + 1]) if first is not None and epoch >= first]
    scores = {"kept": auc(p[kept]), "mean-p": auc(p[:kept + 1].mean(0)), "mean-p-3": auc(p[start3:kept + 1].mean(0)),
              "mean-p-learnt": auc(p[learnt].mean(0) if learnt else p[kept]),
              "stored": auc(np.asarray(result.p_noisy)[trained]),
              "rank": auc(ranks[:kept + 1].mean(0)), "all-p": auc(p.mean(0)),
              "oracle": max(auc(p[i]) for i in range(len(p)))}
    return {**scores, "kept_epoch": result.label_issues_epoch}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fmnist:1000,fmnist:4000,gen:1000,gen:4000")
    parser.add_argument("--noise", default="0.2,0.4,0.6")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", default="50")
    parser.add_argument("--methods", default="lr-m-dyr-h")
    parser.add_argument("--out", default="benchmarks/results/label-epoch-combine")
    args = parser.parse_args(argv)
    out = Path(args.out)
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    for spec in args.data.split(","):
        source, n = spec.split(":")
        for noise in [float(v) for v in args.noise.split(",")]:
            for seed in range(args.seeds):
                for method in args.methods.split(","):
                    for epochs in [int(e) for e in args.epochs.split(",")]:
                        job = f"{source}-{n}-noise{round(noise * 100)}-seed{seed}-{method}-e{epochs}"
                        target = out / "jobs" / f"{job}.json"
                        if not target.exists():
                            path = robust_defaults.write_cell(out / "data", source, int(n), noise, seed)
                            record = {"id": job, "source": source, "n": int(n), "noise": noise, "seed": seed,
                                      "method": method, "epochs": epochs,
                                      **probe(path, method, epochs, seed, out / "runs" / job)}
                            target.write_text(json.dumps(record, indent=1))
                            print(job, " ".join(f"{k} {record[k]:.3f}" for k in RULES), flush=True)
    records = [json.loads(p.read_text()) for p in sorted((out / "jobs").glob("*.json"))]  # this run's and earlier ones
    groups: dict = {}
    for r in records:
        groups.setdefault((r["source"], r["n"], r["noise"], r["method"], r["epochs"]), []).append(r)
    lines = ["| data | noise | method | epochs | runs | " + " | ".join(RULES) + " |", "|---|---|---|---|---|" + "---|" * len(RULES)]
    for (source, n, noise, method, epochs), rs in sorted(groups.items()):
        cells = " | ".join(f"{100 * np.mean([r[k] for r in rs]):.1f}" for k in RULES)
        lines.append(f"| {source} {n} | {round(noise * 100)}% | {method} | {epochs} | {len(rs)} | {cells} |")
    table = "\n".join(lines) + "\n\nDetection AUC x100 over the training rows, mean over seeds.\n"
    (out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
