"""The generate stage: `generate()` (genaug.generate.dispatch) makes a generated column with the lease or Ray engine.

Names are imported on first use, so `import genaug.generate.options` (the CLI) does not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["column_status", "generate"]


def __getattr__(name: str) -> Any:
    """generate and column_status, imported on first use."""
    if name == "generate":
        from genaug.generate.dispatch import generate

        return generate
    if name == "column_status":
        from genaug.generate.status import column_status

        return column_status
    raise AttributeError(f"module 'genaug.generate' has no attribute {name!r}")
