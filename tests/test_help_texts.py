"""Help texts and errors that point at options that exist and do something (issue 26, item 9)."""

import numpy as np

from latentmix.cli import build_parser, main


def _help(*command):
    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions if hasattr(a, "choices") and a.choices and name in a.choices).choices[name]
    return " ".join(parser.format_help().split())


def test_val_split_help_says_which_default_applies_where():
    text = _help("train")
    assert "A --data file or image folder without its own validation set: that split is the validation set " \
           "(default 0.1)" in text
    assert "Built-in data sets and files with val_* arrays: an extra split of the training set (default 0, none)" in text


def test_report_help_takes_one_run_folder():
    assert "one run folder (the --out of latentmix train)" in _help("report")


def test_detect_and_predict_on_a_missing_or_empty_folder_suggest_no_train_options(tmp_path, capsys):
    for command in (["detect", str(tmp_path / "nowhere")],
                    ["predict", str(tmp_path / "nowhere"), "--data", "x.npz"],
                    ["detect", str(tmp_path)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "latentmix train run" in err and "--overwrite" not in err and "--resume" not in err, command


def test_a_finished_folder_suggests_overwrite_not_resume(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x, labels=(x[:, 0] > 0).astype(np.int64))
    command = ["train", "--data", str(tmp_path / "f.npz"), "--epochs", "1", "--out", str(tmp_path / "run"),
               "--device", "cpu", "--quiet"]
    assert main(command) == 0
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "already holds a finished run" in err and "--overwrite" in err and "--resume" not in err
