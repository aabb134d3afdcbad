"""The one-line error check of the storage tests (a plain module beside them, imported as `cli_errors`)."""

from genaug.cli import main


def one_line_error(argv: list[str], capsys) -> str:
    """Run `genaug argv` in-process and return its error line, asserting exit 2 and one line without a traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genaug: error: ") and "\n" not in err and "Traceback" not in err
    return err
