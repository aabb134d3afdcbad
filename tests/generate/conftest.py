"""Fixtures of the generate-stage tests: a per-session cache folder for the tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def genaug_cache(tmp_path_factory) -> Path:
    """Tiny models are saved under a per-session cache (subprocesses inherit it through the environment)."""
    path = tmp_path_factory.mktemp("genaug-cache")
    old = os.environ.get("GENAUG_CACHE")
    os.environ["GENAUG_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GENAUG_CACHE", None)
    else:
        os.environ["GENAUG_CACHE"] = old
