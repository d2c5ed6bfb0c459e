"""`latentmix.progress.EpochProgress`: a bar on a terminal, one line per epoch in a log."""

import io


from latentmix.progress import EpochProgress, is_terminal


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _row(epoch, bootstrapping=False):
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": 0.5 + epoch / 100, "lr": 0.05,
            "bootstrapping": bootstrapping}


def test_a_log_gets_one_line_per_epoch():
    log, clock = io.StringIO(), FakeClock()
    progress = EpochProgress(range(1, 4), desc="lr-m-dyr-h noise=0.2 seed=0", corrects=True, stream=log,
                             min_interval_s=0, clock=clock)
    for epoch in progress:
        clock.now += 7
        progress.epoch_done(_row(epoch, bootstrapping=epoch == 3))
    lines = log.getvalue().splitlines()
    assert lines == [
        "lr-m-dyr-h noise=0.2 seed=0: epoch 1/3, loss 1.0000, val acc 0.5100, lr 0.05, correction off, 7 s",
        "lr-m-dyr-h noise=0.2 seed=0: epoch 2/3, loss 0.5000, val acc 0.5200, lr 0.05, correction off, 14 s",
        "lr-m-dyr-h noise=0.2 seed=0: epoch 3/3, loss 0.3333, val acc 0.5300, lr 0.05, correction on, 21 s",
    ]
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()  # no bar's escape codes in a log


def test_short_epochs_print_at_most_every_interval_and_always_first_and_last():
    log, clock = io.StringIO(), FakeClock()
    progress = EpochProgress(range(1, 11), desc="ce", stream=log, min_interval_s=10, clock=clock)
    for epoch in progress:
        clock.now += 3  # epochs of 3 s: lines at epochs 1, then >= 10 s later (5, 9), and the last (10)
        progress.epoch_done(_row(epoch))
    epochs = [line.split("epoch ")[1].split("/")[0] for line in log.getvalue().splitlines()]
    assert epochs == ["1", "5", "9", "10"]
    assert "correction" not in log.getvalue()  # a method without correction does not say off


def test_a_terminal_gets_the_bar_not_lines():
    screen = Terminal()
    progress = EpochProgress(range(1, 3), desc="ce", stream=screen, min_interval_s=0, clock=FakeClock())
    for epoch in progress:
        progress.epoch_done(_row(epoch))
    text = screen.getvalue()
    assert "\r" in text and "val_acc=0.5200" in text  # tqdm redraws in place, the postfix on the bar
    assert "epoch 1/2, loss" not in text


def test_disabled_is_silent_and_still_iterates():
    log = io.StringIO()
    progress = EpochProgress(range(4, 6), enabled=False, stream=log)
    seen = []
    for epoch in progress:
        seen.append(epoch)
        progress.epoch_done(_row(epoch))
    assert seen == [4, 5] and log.getvalue() == ""


def test_is_terminal_on_odd_streams():
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed) and not is_terminal(object()) and is_terminal(Terminal())


def test_train_writes_epoch_lines_to_a_redirected_stderr(tmp_path, capfd):
    import numpy as np

    from latentmix.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x, labels=(x[:, 0] > 0).astype(np.int64))
    assert main(["train", "--data", str(tmp_path / "f.npz"), "--epochs", "3", "--method", "lr-m-dyr-h",
                 "--out", str(tmp_path / "run"), "--device", "cpu"]) == 0
    err = capfd.readouterr().err  # pytest's capture is no terminal, as a log file is not
    assert "epoch 1/3, loss" in err and "epoch 3/3, loss" in err and "correction off" in err
