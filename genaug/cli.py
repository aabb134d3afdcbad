"""The `genaug` command line: one command per stage, each registered by its stage's own cli module."""

from __future__ import annotations

import errno
import importlib
import sys

import typer

from genaug.core.errors import GenaugError

try:  # typer >= 0.20 vendors click as typer._click; older versions use click itself
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click

# typer.Abort / typer.Exit exist in every supported typer (click's own classes in old ones, typer's in new ones,
# where typer._click.exceptions has no Abort); click's are added when present so either kind is caught.
_ABORT = tuple({typer.Abort, getattr(click.exceptions, "Abort", typer.Abort)})
_EXIT = tuple({typer.Exit, getattr(click.exceptions, "Exit", typer.Exit)})
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", None)


app = typer.Typer(
    name="genaug",
    help="Generative models as a data augmentation for self-supervised learning: "
    "ingest -> generate -> train -> eval, all through WebDataset shard sets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each stage module defines register(app); imports of torch and friends stay inside the commands so --help is fast.
STAGE_MODULES = (
    "genaug.ingest.cli",
    "genaug.generate.cli",
    "genaug.score.cli",
    "genaug.fit.cli",
    "genaug.train.cli",
    "genaug.evaluate.cli",
    "genaug.inspect_cli",
    "genaug.shards.cli",
    "genaug.demo",
    "genaug.export",
)

for _name in STAGE_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line `genaug: error: ...` and exit 2, never a traceback."""
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="genaug", standalone_mode=False)
    except GenaugError as e:
        print(f"genaug: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # what was committed is safe; the rerun resumes
            where = f" writing {e.filename}" if e.filename else ""
            msg = f"no space left on the device{where}: free space, then rerun the same command to resume"
            print(f"genaug: error: {msg}", file=sys.stderr)
            return 2
        raise
    except Exception as e:
        if _NO_ARGS is not None and isinstance(e, _NO_ARGS):
            e.show()
            return 0
        if isinstance(e, click.ClickException):
            msg = e.format_message()
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            print(f"genaug: error: {where}{' '.join(msg.split())} (see --help)", file=sys.stderr)
            return 2
        if isinstance(e, _ABORT):
            print("genaug: aborted", file=sys.stderr)
            return 130
        if isinstance(e, _EXIT):
            return int(getattr(e, "exit_code", 0) or 0)
        raise  # a bug: its own traceback, unchanged
    except KeyboardInterrupt:
        print("genaug: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
