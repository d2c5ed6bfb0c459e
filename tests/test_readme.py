"""The README's code runs: the "In your own loop" example is executed as written, so it cannot rot."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks of the README section headed `section` (up to the next ## heading)."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


def run_example(section: str, tmp_path, monkeypatch, capsys) -> tuple[dict, float, float, str]:
    """Run the README section's one Python block in `tmp_path`; its namespace, the shares of wrong
    and right labels it prints as flagged, and the printed text."""
    blocks = python_blocks(section)
    assert len(blocks) == 1 and len(blocks[0].splitlines()) <= 40
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out
    wrong, right = (float(v) for v in re.findall(r"flagged: ([\d.]+) of the wrong labels, ([\d.]+) of the right", printed)[0])
    return namespace, wrong, right, printed


def test_the_own_loop_example_runs_and_finds_the_wrong_labels(tmp_path, monkeypatch, capsys):
    namespace, wrong, right, printed = run_example("In your own loop", tmp_path, monkeypatch, capsys)
    assert wrong >= 0.7 and right <= 0.1, printed
    assert namespace["correction"].bootstrapping and namespace["correction"].epochs_done == 10

    # the checkpoint it writes resumes both objects
    import torch

    import latentmix

    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    correction = latentmix.LossCorrection(2000, correction="hard", warmup_epochs=5)
    correction.load_state_dict(state["correction"])
    assert (correction.p_noisy == namespace["p_noisy"]).all()
    mixup = latentmix.LatentMixup(namespace["model"], ["1", "3"], layers="0-2", alpha=2.0, seed=123)
    mixup.load_state_dict(state["mixup"])
    x = torch.randn(8, 20)
    assert mixup(x).plan.lam == namespace["mixup"](x).plan.lam


def test_the_lightning_example_runs_and_finds_the_wrong_labels(tmp_path, monkeypatch, capsys):
    pytest.importorskip("lightning", reason="the Lightning example needs `pip install latentmix[lightning]`")
    namespace, wrong, right, printed = run_example("With Lightning", tmp_path, monkeypatch, capsys)
    assert wrong >= 0.7 and right <= 0.1, printed
    assert namespace["mixup"].correction.bootstrapping and namespace["mixup"].correction.epochs_done == 10


@pytest.mark.parametrize("section, count", [("Python: your own model", 1), ("In your own loop", 1),
                                            ("With Lightning", 1)])
def test_each_python_section_keeps_its_blocks_and_they_parse(section, count):
    """A section that loses its code block fails here (it would pass a loop over no blocks)."""
    blocks = python_blocks(section)
    assert len(blocks) == count, f"README section {section!r} has {len(blocks)} python block(s), expected {count}"
    for block in blocks:
        compile(block, "README.md", "exec")


def test_a_section_without_its_block_is_caught(monkeypatch, tmp_path):
    """The check above, on a README whose section lost its block: no block is found."""
    stripped = re.sub(r"```python\n.*?```", "", README.read_text(), flags=re.S)
    (tmp_path / "README.md").write_text(stripped)
    monkeypatch.setitem(globals(), "README", tmp_path / "README.md")
    assert python_blocks("Python: your own model") == []
