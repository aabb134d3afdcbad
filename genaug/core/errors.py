"""The one exception type for errors a user can cause."""

from __future__ import annotations


class GenaugError(Exception):
    """A user-caused error: the message names the file or flag and the fix; the CLI prints it on one line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
