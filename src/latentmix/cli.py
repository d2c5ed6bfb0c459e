"""Command line: ``latentmix train | detect | predict | reproduce | sweep | tune | report`` (``latentmix COMMAND --help`` for each)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from latentmix.config_checks import check_out_outside_data, check_output_folder
from latentmix.errors import ConfigError, out_of_memory_reason
from latentmix.runtime import prefer_passive_openmp_waiting, set_threads
from latentmix.summary import RunSummary


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `train` and `tune`: a flag for every `RunConfig` field that has one, built
    from the fields' declarations (`latentmix.config.add_run_arguments`), and the CPU threads of
    this process. Each help text states its default once (the parsers use argparse's plain
    formatter: its ArgumentDefaults formatter printed a second, contradictory "(default: None)")."""
    from latentmix.config import OPTIMISATION, add_run_arguments

    groups = add_run_arguments(parser)
    groups[OPTIMISATION].add_argument(
        "--threads", type=int, help="CPU threads for torch (default: 1 for spirals, torch's default otherwise)")


def config_from_args(args: argparse.Namespace):
    """The `RunConfig` the run options of `args` give, checked, with errors naming the flags."""
    from latentmix.config import DEFAULTS, RunConfig, cli_values
    from latentmix.data import DATASETS

    values = cli_values(args)
    named = str(values.get("dataset") or "").strip().lower()
    if values.get("data") and named in DATASETS and named not in (DEFAULTS["dataset"], "arrays"):
        # the run trains on the file: a built-in data set's name beside it would be printed and
        # recorded as what was trained on (issue 25.5); another name only names the run
        raise ConfigError(f"--dataset {values['dataset']} is a built-in data set, but --data {values['data']} is what "
                          "would be trained on: pass only --data for your own file or folder (with --dataset NAME "
                          "only to name the run), or only --dataset for the built-in data set")
    if values.get("data") and named == DEFAULTS["dataset"]:
        # without a name of its own, the run is named after the file (its summary and default
        # folder said "spiral", the --dataset default, before)
        values["dataset"] = Path(values["data"]).stem or "arrays"
    return RunConfig(**values).validate("cli")


# --------------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run; under ``torchrun --nproc_per_node=K`` the K processes train it together
    (data-parallel, docs/distributed.md) and the first one writes the run folder and prints."""
    from latentmix.distributed import distributed_run
    from latentmix.naming import run_id
    from latentmix.training import train

    config = config_from_args(args)
    set_threads(args.threads, config.dataset)
    out = Path(args.out) if args.out else Path("runs") / config.dataset / run_id(config)
    check_out_outside_data(out, config.data)
    check_output_folder(out, "--out")
    # `train` accepts the command only for a new run, the run the folder holds (--resume) or with
    # --overwrite (latentmix.run_folder), before it changes anything in the folder.
    with distributed_run(config.device) as dist:
        result = train(config, run_dir=out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                       distributed=dist)
        if dist is None or dist.is_main:
            wall_time_s = result.wall_time_s + (result.twin.wall_time_s if result.twin is not None else 0.0)
            _print_summary(result.run_summary(), out, wall_time_s, result.selection_sets())
    return 0


def _print_summary(summary: RunSummary, out: Path, wall_time_s: float,
                   selection_sets: Optional[tuple[str, str]] = None) -> None:
    print(f"method {summary.method} (layers {summary.mix_layers}, correction {summary.correction}) "
          f"on {summary.dataset}, {noise_text(summary)}, seed {summary.seed}, {summary.epochs} epochs")
    print("  " + accuracy_text(summary))
    for line in selection_lines(summary, selection_sets):
        print("  " + line)
    if summary.kept_model is not None:
        print("  " + kept_model_text(summary))
    if summary.bootstrap_start_epoch is not None:
        reason = f" ({summary.bootstrap_start_reason})" if summary.bootstrap_start_reason else ""
        print(f"  bootstrapping from epoch {summary.bootstrap_start_epoch}{reason}")
        if summary.correction_stopped:
            print(f"  the correction stopped: {summary.correction_stopped}")
        elif summary.correction_kept is False:
            print(f"  the correction did not beat its own warm-up on the validation split: the selected model "
                  f"(epoch {summary.selected_epoch}) and the label issues are the warm-up's")
    elif summary.bootstrap_start_reason:  # a correcting method whose correction never started, and why
        print(f"  bootstrapping {summary.bootstrap_start_reason}")
    if summary.training_note:
        print(f"  note: {summary.training_note}")
    if summary.last_train_acc_clean is not None:
        print(f"  train acc vs given labels {summary.last_train_acc_noisy:.4f}, vs clean labels {summary.last_train_acc_clean:.4f}")
    if summary.estimated_noise_rate is not None:
        actual = summary.actual_noise_rate
        print(f"  estimated share of wrong labels {summary.estimated_noise_rate:.3f}"
              + (f" (actual {actual:.3f})" if actual is not None else "")
              + f", {ESTIMATE_SOURCE}")
        if summary.noise_estimate_doubt:
            print(f"  the estimate is unreliable: {summary.noise_estimate_doubt}")
        pairs = summary.flagged_noise_pairs or []
        if pairs:
            print(f"  flagged labels (label issues {label_issues_source(summary)}), given -> predicted class: "
                  + ", ".join(f"{a}->{b} ({n})" for a, b, n in pairs[:5]))
    collapsed = summary.noise_model_collapsed_epochs or 0
    if collapsed:
        print(f"  note: in {collapsed} of {summary.epochs} epochs the noise model found no two groups of losses "
              "(every sample the same P(noisy)); bootstrapping kept the last fit that did, the label issues come "
              f"from epoch {summary.label_issues_epoch}, and equal P(noisy) are ranked by the loss")
    if summary.detection_auc is not None:
        print(f"  noise detection: AUC {summary.detection_auc:.4f}, precision {summary.detection_precision:.3f}, "
              f"recall {summary.detection_recall:.3f} at P(noisy) > 0.5")
    from latentmix.plain_twin import TWIN_FOLDER

    twin = f", the plain CE twin in {TWIN_FOLDER}/" if summary.kept_model is not None else ""
    print(f"  {wall_time_s:.1f} s; results in {out}/ (result.json, metrics.csv, label_issues.csv, timing.json{twin})")


def label_issues_source(summary: RunSummary) -> str:
    """Which epoch's noise model the label issues come from: the run's, and its plain CE twin's
    where the two were averaged (`latentmix.plain_twin.with_twin_label_issues`)."""
    if summary.twin_label_issues_epoch is None:
        return f"of epoch {summary.label_issues_epoch}"
    return (f"of epoch {summary.label_issues_epoch}, P(noisy) averaged with the plain CE twin's of epoch "
            f"{summary.twin_label_issues_epoch}")


def kept_model_text(summary: RunSummary) -> str:
    """Which model a run with a plain CE twin keeps, and the two selection signals that decided."""
    from latentmix.plain_twin import KEPT_TWIN, TWIN_FOLDER
    from latentmix.selection import SELECTION_WINDOW

    if summary.twin_failed:
        return f"kept: this run's model; {summary.twin_failed}, so nothing was compared"
    scores = (f"on the validation split, mean accuracy over the {SELECTION_WINDOW} epochs up to each selected epoch: "
              f"this run {summary.selection_score:.4f}, the plain CE twin {summary.twin_selection_score:.4f}")
    if summary.kept_model == KEPT_TWIN:
        return (f"kept: the plain CE twin's model ({TWIN_FOLDER}/, epoch {summary.kept_epoch}, accuracy "
                f"{summary.kept_val_acc:.4f}), which scores higher {scores}; predict and load_run use it, the noise "
                "estimate is this run's and the label issues both runs'")
    return f"kept: this run's model, which scores at least as high {scores}"


# How `estimated_noise_rate` is computed (latentmix.selection.estimate_noise_rate), in words.
ESTIMATE_SOURCE = "the median share the noise model flags over the early-learning epochs"


def accuracy_text(summary: RunSummary) -> str:
    """Best / last / selected validation accuracy, named by what it is measured against: on a
    user's file without clean labels the validation rows keep their given labels, so the figure is
    agreement with possibly wrong labels (it reads lower than the model's clean accuracy)."""
    selected = (f", selected {summary.selected_val_acc:.4f} (epoch {summary.selected_epoch}, picked by "
                "validation accuracy)" if summary.selected_val_acc is not None else "")
    figures = (f"best {summary.best_val_acc:.4f} (epoch {summary.best_epoch}), last {summary.last_val_acc:.4f}"
               f"{selected}")
    if summary.val_acc_on_given_labels:
        return ("val acc against the given validation labels (no clean reference: wrong labels count a right "
                f"prediction as a miss): {figures}")
    return f"best val acc {figures[len('best '):]}"


def selection_lines(summary: RunSummary, selection_sets: Optional[tuple[str, str]]) -> list[str]:
    """Which set selected the kept epoch and which scored it (`RunResult.selection_sets`), the test
    accuracy when a test set scored, and a warning when one set did both: an accuracy measured on
    the set that picked its epoch is optimistic (the epoch was picked for scoring high there)."""
    if selection_sets is None:
        return []
    selecting, scored = selection_sets
    lines = [f"selected by {selecting}, scored on {scored}"]
    if summary.selected_test_acc is not None:
        lines[0] += (f": test acc {summary.selected_test_acc:.4f} at the selected epoch {summary.selected_epoch} "
                     f"(last {summary.last_test_acc:.4f})")
    elif selecting == scored:
        lines.append("warning: the selected accuracy was measured on the set it was selected by (optimistic); "
                     "give your test set as test_* arrays (an image folder: a test/ folder) to score it apart, "
                     "or hold out --val-split of the training data to select")
    return lines


def noise_text(summary: RunSummary) -> str:
    """The noise a run trained with: the synthetic rate, else the measured rate of given noisy
    labels (a --noisy-labels file, a data file's own), else unknown (no clean labels to compare)."""
    actual = summary.actual_noise_rate
    if summary.noise > 0:
        return f"noise {summary.noise:g}"
    if actual is None:
        return "noise unknown (labels as given, no clean reference)"
    return f"noise {actual:.3g} (given noisy labels)" if actual > 0 else "noise 0"


def cmd_detect(args: argparse.Namespace) -> int:
    """Rank the training labels of a run by P(noisy) (its label_issues.csv when that matches the
    run, else rebuilt from the run's checkpoint)."""
    import csv

    from latentmix.detect import check_detect_args, class_names, describe_issue, label_issues_for

    check_detect_args(args.top, args.threshold)
    issues = label_issues_for(Path(args.run_dir))
    with issues.open() as handle:
        rows = list(csv.DictReader(handle))
    flagged = [row for row in rows if float(row["p_noisy"]) > args.threshold]
    print(f"{len(flagged)} of {len(rows)} labels have P(noisy) > {args.threshold:g} ({issues})")
    _print_noise_estimate(Path(args.run_dir), len(rows))
    classes = class_names(Path(args.run_dir))
    for row in rows[: args.top]:
        print("  " + describe_issue(row, classes))
    return 0


def _print_noise_estimate(run_dir: Path, num_rows: int) -> None:
    """Where the label issues come from when the run changed course (a correction stopped, or a
    warm-up kept over it), and how noisy the labels are, from a finished run's result.json: the estimated share of wrong
    labels (beside the actual one when known) and the most frequent given -> predicted class pairs
    of the flagged labels (beside the true given -> clean pairs when known)."""
    from latentmix.run_folder import RunFolder

    record = RunFolder(run_dir).read_result()
    try:
        summary = RunSummary.from_dict(record) if record is not None else None
    except (ValueError, TypeError, AttributeError):  # not a summary document
        return
    if summary is None:
        return
    if summary.correction_stopped:  # where the label issues come from, when the run changed course
        print(f"the correction stopped: {summary.correction_stopped}; the label issues are of epoch "
              f"{summary.label_issues_epoch}")
    elif summary.correction_kept is False:
        print(f"the correction did not beat its own warm-up: the label issues are the warm-up's (epoch "
              f"{summary.label_issues_epoch})")
    if summary.estimated_noise_rate is None:
        return
    actual = summary.actual_noise_rate
    print(f"estimated share of wrong labels: {summary.estimated_noise_rate:.3f}"
          + (f" (actual {actual:.3f})" if actual is not None else "") + f", {ESTIMATE_SOURCE}")
    if summary.noise_estimate_doubt:
        print(f"  unreliable: {summary.noise_estimate_doubt}")
    epoch = f" {label_issues_source(summary)}" if summary.label_issues_epoch else ""
    first, kept = summary.label_issues_from_epoch, summary.label_issues_epoch
    mean = (f"each a mean over epochs {first}-{kept}" if first is not None and kept is not None and first < kept
            else "each that epoch's" if first is not None and first == kept else "each a mean over the epochs up to it")
    print(f"  (the count above is not that estimate: it thresholds the P(noisy) of all {num_rows} rows of the label "
          f"issues{epoch}, {mean}; rank the labels by P(noisy), size the problem by the estimate)")
    for pairs, what in ((summary.flagged_noise_pairs, "flagged labels, given -> predicted class"),
                        (summary.true_noise_pairs, "wrong labels, given -> true class")):
        if pairs:
            print(f"  {what}: " + ", ".join(f"{a}->{b} ({n})" for a, b, n in pairs[:8]))


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict with the model a run kept (`latentmix.predict.load_run`): one CSV row per sample of
    a file or image folder, to --out or standard output; what was loaded to standard error."""
    from latentmix.predict import describe, load_run, prediction_rows, read_prediction_inputs, write_predictions

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as preds.csv")
    trained = load_run(args.run_dir, weights=args.weights, device=args.device)
    samples = read_prediction_inputs(args.data, trained)
    predictions = trained.predict(samples.inputs, batch_size=args.batch_size)
    columns, rows = prediction_rows(samples, predictions, trained)
    write_predictions(out, columns, rows)
    note = f"{len(rows)} predictions by {describe(trained, args.run_dir)}"
    if samples.given is not None and len(rows):
        agree = int((predictions.labels == samples.given).sum())
        note += f"; {agree} of {len(rows)} ({agree / len(rows):.1%}) agree with the file's labels"
    print(note + (f"; written to {out}" if out is not None else ""), file=sys.stderr)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from latentmix.experiments import reproduce

    return reproduce.main(args)


# --------------------------------------------------------------------------------------------


def cmd_tune(args: argparse.Namespace) -> int:
    from latentmix import tune

    return tune.main(args, config_from_args(args))


def _add_tune_command(commands) -> None:
    """`latentmix tune`: the run options of `train` (its fixed dimensions) and the search options."""
    from latentmix.tune import add_tune_arguments

    tune = commands.add_parser(
        "tune", help="search mix layers, alpha and correction on your data (Optuna TPE + median pruning)",
        description="Each trial is a training run; --layers/--alpha/--correction fix that dimension instead of "
                    "searching it. The best settings come with a ready-to-run `latentmix train` line.")
    _add_run_options(tune)
    add_tune_arguments(tune)
    tune.set_defaults(handler=cmd_tune)


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentmix", description="Noise-tolerant training with latent mixup.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one run")
    _add_run_options(train)
    train.add_argument("--out", help="run folder (default runs/DATASET/RUN_ID)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run the folder holds from its last checkpoint (the settings must match it)")
    train.add_argument("--overwrite", action="store_true", help="replace the run the folder holds")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=cmd_train)

    detect = commands.add_parser("detect", help="which labels of a trained run are wrong?")
    detect.add_argument("run_dir", help="a run folder written by latentmix train")
    detect.add_argument("--top", type=int, default=20, help="how many of the most suspicious labels to print (default 20)")
    detect.add_argument("--threshold", type=float, default=0.5,
                        help="count the labels whose P(noisy) is above this probability (default 0.5)")
    detect.set_defaults(handler=cmd_detect)

    predict = commands.add_parser(
        "predict", help="predict classes with the model a run kept",
        description="Loads the run's selected checkpoint with the input transform the run applied (the "
                    "standardisation of a data file, the scaling of an image folder) and writes one CSV row per "
                    "sample: the predicted class and each class's probability. Python: latentmix.load_run(RUN_DIR).")
    predict.add_argument("run_dir", help="a run folder written by latentmix train (its --out)")
    predict.add_argument("--data", required=True,
                         help="the samples: a .npz with the run's input arrays, a .csv with its feature columns, or a "
                              "folder of images (any depth); a labels column/array, if present, is compared with")
    predict.add_argument("--out", help="CSV file to write (default: standard output)")
    predict.add_argument("--weights", choices=("selected", "last"), default="selected",
                         help="selected: the checkpoint picked by validation accuracy (selected_model.pt; the last "
                              "epoch for a run that selects none); last: the last epoch trained (default selected)")
    predict.add_argument("--batch-size", type=int, default=1000, help="samples per forward (default 1000)")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    predict.set_defaults(handler=cmd_predict)

    reproduce = commands.add_parser("reproduce", help="run one of the paper's tables")
    from latentmix.experiments.reproduce import add_reproduce_arguments

    add_reproduce_arguments(reproduce)
    reproduce.set_defaults(handler=cmd_reproduce)

    # Commands whose parsers live beside their code (`register(commands)`), in the order of --help.
    from latentmix import report_cli
    from latentmix.sweep import cli as sweep_cli

    sweep_cli.register(commands)
    _add_tune_command(commands)
    report_cli.register(commands)
    _use_formatter(parser)
    return parser


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, wrapping lines at spaces only: names such as lr-m-dyr-h-0-4 are not
    split at their hyphens."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    """`HelpFormatter` for `parser` and every sub-command under it."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _use_formatter(sub)


def main(argv: Optional[Sequence[str]] = None) -> int:
    # The entry point of `latentmix`, `python -m latentmix` and a sweep's helper processes: torch is
    # not imported yet (this module and its parsers import it lazily), so the policy still applies.
    prefer_passive_openmp_waiting()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"latentmix: error: {error}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:
        reason = out_of_memory_reason(error)
        if reason is None:
            raise
        print(f"latentmix: error: out of memory ({reason}); the model, sized by the inputs (features, token "
              "vocabulary, classes) and --width, or --batch-size is too large for this machine", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentmix: interrupted; run the same command with --resume (train) or again (reproduce) to continue",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
