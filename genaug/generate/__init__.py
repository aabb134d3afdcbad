"""The generate stage: K generated variants per source image into generated columns (see runner.generate)."""

from genaug.generate.runner import generate
from genaug.generate.status import column_status

__all__ = ["column_status", "generate"]
