"""Slow: SSL training on scikit-learn digits shards beats the random-init backbone's linear probe (CPU minutes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "digits_methods.py"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "barlow"])
def test_trained_backbone_beats_random_init_on_digits(tmp_path, method):
    spec = importlib.util.spec_from_file_location("digits_methods", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (row,) = mod.run(tmp_path, [method], steps=150, batch=128, width=16, workers=0)
    assert row["trained"] > row["random"], row
