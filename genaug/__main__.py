"""`python -m genaug` runs the CLI."""

from genaug.cli import entry

entry()
