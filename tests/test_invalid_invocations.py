"""At least 280 invalid invocations across every command and flag: each ends in one line `genaug: error: ...`,
exit 2."""

from __future__ import annotations

import pytest

from genaug.cli import main
from genaug.testing.invalid import invalid_invocations


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return invalid_invocations(tmp_path_factory.mktemp("invalid"))


def test_every_invalid_invocation_is_one_line_and_exit_2(rows, capsys):
    assert len(rows) >= 280
    bad = []
    for label, argv in rows:
        capsys.readouterr()
        rc = main(argv)
        err = capsys.readouterr().err
        if not (rc == 2 and err.count("\n") == 1 and err.startswith("genaug: error: ")):
            bad.append(f"{label}: exit {rc}, stderr {err[-300:]!r}")
    assert not bad, "\n".join(bad)
