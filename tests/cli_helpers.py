"""What the CLI tests of bad input share: one clear error line, no traceback."""

from latentmix.cli import main


def cli_error(capsys, args) -> str:
    """Run the CLI, expect exit 2 and one `latentmix: error:` line without a traceback."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("latentmix: error: "), err
    return lines[0]
