"""A plain-CE twin beside the default run, replayed offline on a robustness-suite folder.

On data whose classes are not convex regions, latent mixing itself holds the network back, and no
signal a single run reads tells that from a network limited by its data (docs/robustness-suite.md,
"Data no rule was chosen on"). A run that also trained a plain CE twin (same seed, same held-out
split) could compare the two on the noisy validation split. The suite trains exactly such a pair
in every cell: CE and LR-M-DYR-H of the same seed. So two twin rules can be judged from the finished
runs, without training:

* `end`: the twin trains only until the end of early learning (the last epoch at the initial lr,
  where every automatic run decays it); the run switches to the plain twin, which goes on as CE,
  when the twin's trailing mean of 3 noisy-validation accuracies at that epoch is above the mixed
  network's by more than twice the standard error of the difference (two independent proportions
  on the split's n rows: conservative, since a real twin would pair the two on the same rows);
* `whole`: the twin trains the whole run; the run keeps the one whose selected epoch has the
  higher trailing mean (the selection signal, read across both), LR-M-DYR-H on a tie;
  `whole-model` the same, but only the kept model is the twin's: the label issues and the noise
  estimate stay the corrected run's (what `latentmix.plain_twin` built); `whole-2se` only where the
  twin's is higher by more than twice the standard error of the difference (as `end`);
  `whole-paired` (as `whole-model`) only where the twin's selected model is right on significantly
  more of the held-out rows than the run's (McNemar's exact test, one-sided, p < 0.05), read from
  the two models' predictions (`--rules whole-paired`: it loads each run's selected model).

A switched run's outcome is its CE twin's record (selected accuracy, ranking AUC, noise estimate
and its doubt): the library's twin is exactly the suite's CE run of the same seed, so the `whole-model`
replay is what the library gives (`--built` checks that, run by run, on a suite trained with it).
Prints and writes the suite's checks before and after, and every switch.

    python benchmarks/plain_twin.py benchmarks/results/robustness-held-out [--out FILE.md]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import robustness_suite as suite  # noqa: E402  (the suite's own checks)
import selection_rules  # noqa: E402  (its reading of a run folder)
from latentmix.selection import selection_score  # noqa: E402  (the run's own selection signal)

TAKEN_FROM_TWIN = ("selected_val_acc", "best_val_acc", "last_val_acc", "ranking_auc", "estimated_noise_rate",
                   "noise_estimate_doubt", "selected_test_acc", "best_test_acc", "last_test_acc")
# `whole-model`: the twin's model only; the label issues and the noise estimate stay the corrected run's
ACCURACY = ("selected_val_acc", "best_val_acc", "last_val_acc", "selected_test_acc", "best_test_acc", "last_test_acc")


# the rules replayed from metrics alone (`whole-paired` loads every run's selected model)
DEFAULT_RULES = "end,whole,whole-model,whole-2se"


def read_run(folder: Path, record: dict) -> Optional[dict]:
    """The record's run folder as `selection_rules.read_run` reads it (metrics rows with numbers
    parsed, the size of the split it selects on), or None where the folder is gone."""
    run_dir = folder / record["run_dir"]
    return selection_rules.read_run(run_dir) if (run_dir / "metrics.csv").exists() else None


def mcnemar_p(twin_only: int, ours_only: int) -> float:
    """One-sided exact McNemar test: the probability of `twin_only` or more of the
    `twin_only + ours_only` discordant rows going the twin's way when each is a fair coin
    (McNemar 1947; the exact binomial form)."""
    n = twin_only + ours_only
    return sum(math.comb(n, k) for k in range(twin_only, n + 1)) / 2**n if n else 1.0


@functools.lru_cache(maxsize=4)
def _file_rows(path: str, data: str):
    return suite.training_rows(Path(path), suite.KNOWN[data])[0]


def heldout_hits(folder: Path, record: dict):
    """Whether the run's selected model predicts the given label of each row it held out to select
    by (in the order of its label_issues.csv), from the model itself (`latentmix.load_run`)."""
    import csv

    import numpy as np
    from latentmix import load_run

    run_dir = folder / record["run_dir"]
    config = json.loads((run_dir / "config.json").read_text())["config"]
    with (run_dir / "label_issues.csv").open() as handle:  # a file's held-out rows; an image folder's val split
        rows = sorted((int(r["index"]), int(r["given_label"]), r.get("file")) for r in csv.DictReader(handle)
                      if r["split"] in ("holdout", "val"))
    if rows and rows[0][2]:  # an image folder: the images as stored
        from PIL import Image

        inputs = np.stack([np.asarray(Image.open(Path(config["data"]) / file)) for _, _, file in rows])
    else:
        inputs = _file_rows(config["data"], record["data"])[[index for index, _, _ in rows]]
    predicted = np.asarray(load_run(run_dir).predict(inputs).labels)
    return predicted == np.array([label for _, label, _ in rows])


def learning_end(rows: list[dict]) -> int:
    """The end of early learning of an automatic run: the last epoch at its initial learning rate."""
    return int(max(r["epoch"] for r in rows if r["lr"] == rows[0]["lr"]))


def replay(folder: Path, rule: str) -> tuple[list[dict], list[dict], list[str], float]:
    """(records before, records after the twin rule, the switches, the mean share of the schedule the
    `end` twin trains)."""
    records = [json.loads(p.read_text()) for p in sorted((folder / "jobs").glob("*.json"))]
    records = [r for r in records if r.get("seed") in (None, *suite.SEEDS)]
    by_id = {r["id"]: r for r in records}
    after, switches, shares = [], [], []
    for record in records:
        twin = by_id.get(record["id"].replace("-lr-m-dyr-h-", "-ce-"))
        if record["kind"] != "latentmix" or record["method"] != "lr-m-dyr-h" or twin is None:
            after.append(record)
            continue
        ours_run, plain_run = read_run(folder, record), read_run(folder, twin)
        if ours_run is None or plain_run is None:
            raise SystemExit(f"{record['id']}: no metrics.csv for it or its CE twin under {folder}/runs")
        ours, plain, n = ours_run["rows"], plain_run["rows"], ours_run["size"]
        end = learning_end(ours)
        shares.append(end / len(ours))
        if rule == "end":
            a, b = selection_score(ours, end), selection_score(plain, end)
            se = math.sqrt(a * (1 - a) / n + b * (1 - b) / n)
            switch = b - a > 2 * se
            why = f"at epoch {end}: twin {b:.3f} vs {a:.3f}, 2 s.e. {2 * se:.3f}"
        elif rule == "whole-paired":
            ours_hits, twin_hits = heldout_hits(folder, record), heldout_hits(folder, twin)
            twin_only, ours_only = int((twin_hits & ~ours_hits).sum()), int((ours_hits & ~twin_hits).sum())
            p = mcnemar_p(twin_only, ours_only)
            switch = p < 0.05
            why = f"held-out rows right for the twin only {twin_only}, for ours only {ours_only}: p = {p:.3f}"
        else:
            a = selection_score(ours, int(record["selected_epoch"]))
            b = selection_score(plain, int(twin["selected_epoch"]))
            se = math.sqrt(a * (1 - a) / n + b * (1 - b) / n)
            # `whole`: the higher signal wins; `whole-2se`: only a twin clearly above does
            switch = b - a > 2 * se if rule == "whole-2se" else b > a + 1e-6
            why = f"selected epochs' trailing means: twin {b:.3f} vs {a:.3f}" + (f", 2 s.e. {2 * se:.3f}" if rule == "whole-2se" else "")
        if switch:
            switches.append(f"{record['id']}: {why}; selected {100 * record['selected_val_acc']:.1f} -> "
                            f"{100 * twin['selected_val_acc']:.1f}")
            taken = TAKEN_FROM_TWIN if rule not in ("whole-model", "whole-paired") else ACCURACY
            record = {**record, **{k: twin[k] for k in taken if k in twin}}
        after.append(record)
    return records, after, switches, sum(shares) / max(len(shares), 1)


def checks(records: list[dict], schedule: str) -> str:
    """The issue's checks at one schedule: cells short on accuracy, the worst cell and the mean gain
    over CE, cells short on AUC, estimates off without a doubt."""
    records = suite.with_test_figures(records)
    tag = "" if schedule == "default" else "(3x)"
    cells = sorted({(r["data"], r["noise"]) for r in records if r["kind"] == "latentmix"})
    acc = auc = est = 0
    gains = []
    for data, noise in cells:
        failed = suite.shortfalls(records, data, noise)
        acc, auc, est = acc + (f"acc{tag}" in failed), auc + (f"auc{tag}" in failed), est + (f"est{tag}" in failed)
        means = [suite.mean_of(records, "selected_val_acc", kind="latentmix", data=data, noise=noise, method=m,
                               schedule=schedule) for m in ("lr-m-dyr-h", "ce")]
        if None not in means:
            gains.append((100 * (means[0] - means[1]), f"{data} {noise}"))
    worst = min(gains)
    return (f"| {acc} | {worst[0]:+.1f} ({worst[1]}) | {sum(g for g, _ in gains) / len(gains):+.2f} | {auc} | {est} |")


def check_built(built: Path, reference: Path) -> list[str]:
    """The library's twin (`latentmix.plain_twin`) against this replay: `built` is a suite folder
    whose LR-M-DYR-H runs were trained with the twin and whose CE and cleanlab records were copied
    from `reference`, the folder the replay reads. Every LR-M-DYR-H record must give what
    `whole-model` replays on `reference` (the kept model's selected accuracy, the run's own
    estimate and doubt), and the twin in its run folder must be the cell's CE run of that seed
    (its result.json's selected accuracy the CE record's). Returns the differences (none: the
    library does what was replayed). The ranking is not compared: since the label issues average
    the run's and its twin's noise models, `benchmarks/twin_detection.py --built` checks it."""
    records = {r["id"]: r for r in (json.loads(p.read_text()) for p in sorted((built / "jobs").glob("*.json")))}
    _, replayed, _, _ = replay(reference, "whole-model")
    replayed = {r["id"]: r for r in replayed}
    differences = []
    for key, record in sorted(records.items()):
        if record["kind"] != "latentmix" or record["method"] != "lr-m-dyr-h" or record.get("seed") not in suite.SEEDS:
            continue
        expected = replayed.get(key)
        if expected is None:
            differences.append(f"{key}: not in {reference}")
            continue
        for field in ("selected_val_acc", "selected_test_acc", "estimated_noise_rate", "noise_estimate_doubt"):
            if record.get(field) != expected.get(field):
                differences.append(f"{key}: {field} {record.get(field)!r}, replayed {expected.get(field)!r}")
        twin_file = built / record["run_dir"] / "plain-twin" / "result.json"
        ce = records.get(key.replace("-lr-m-dyr-h-", "-ce-"))
        if not twin_file.exists() or ce is None:
            differences.append(f"{key}: no plain-twin/result.json or no CE record")
            continue
        twin = json.loads(twin_file.read_text())
        for field in ("selected_val_acc", "selected_test_acc"):
            if twin.get(field) != ce.get(field):
                differences.append(f"{key}: its twin's {field} {twin.get(field)!r}, the CE run's {ce.get(field)!r}")
    return differences


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", type=Path, help="a robustness-suite output folder with its runs/")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here as well")
    parser.add_argument("--rules", default=DEFAULT_RULES,
                        help="rules replayed, comma-separated (also whole-paired: McNemar's test on the held-out rows, "
                             "which loads every run's selected model and reads the suite's data files)")
    parser.add_argument("--built", type=Path, default=None,
                        help="a suite folder trained with the library's twin (CE records copied from SUITE): check "
                             "that it gives what the replay `whole-model` gives on SUITE, run by run")
    args = parser.parse_args(argv)
    if args.built is not None:
        differences = check_built(args.built, args.suite)
        lines = [f"The library's twin (`{args.built}`) against the replay `whole-model` on `{args.suite}` "
                 f"(`python benchmarks/plain_twin.py {args.suite} --built {args.built}`): "
                 + (f"{len(differences)} differences" if differences else "every LR-M-DYR-H run as replayed, and "
                    "every twin the cell's CE run")] + [f"- {d}" for d in differences]
        return emit("\n".join(lines) + "\n", args.out, 1 if differences else 0)
    rules = "" if args.rules == DEFAULT_RULES else f" --rules {args.rules}"
    lines = [f"A plain-CE twin replayed on `{args.suite}` (`python benchmarks/plain_twin.py {args.suite}{rules}`)", "",
             "| rule | schedule | `acc` short | worst cell vs CE | mean gain over CE | `auc` short | `est` off, not doubted |",
             "|---|---|---|---|---|---|---|"]
    details = []
    for rule in args.rules.split(","):
        before, after, switches, share = replay(args.suite, rule)
        for schedule in [s for s in suite.SCHEDULES if any(r.get("schedule") == s for r in before)]:
            if rule == args.rules.split(",")[0]:
                lines.append(f"| none (today) | {schedule} " + checks(before, schedule))
            lines.append(f"| twin, `{rule}` | {schedule} " + checks(after, schedule))
        details += ["", f"`{rule}`: {len(switches)} of the LR-M-DYR-H runs switch to their twin"
                    + (f"; the twin trains {100 * share:.0f}% of the schedule on average" if rule == "end" else
                       "; the twin trains the whole schedule"), ""] + [f"- {s}" for s in switches]
    return emit("\n".join(lines + details) + "\n", args.out)


def emit(text: str, out: Optional[Path], status: int = 0) -> int:
    """Print `text`, write it to `out` as well when given, and return the exit status."""
    print(text)
    if out:
        out.write_text(text)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
