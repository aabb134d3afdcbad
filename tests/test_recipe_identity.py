"""The identity of shipped recipes, recorded before the typed-config change (issue 23): it must never move.

A column's recipe hash decides whether an existing column is "the same recipe" (resume, --update, train --gen);
a run's recipe hash decides whether a run folder may be resumed. Values recorded on commit 91a67c0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genaug.core.recipes import available, load_recipe, recipe_hash
from genaug.generate.column import column_hash
from genaug.generate.recipe import resolve_recipe
from genaug.train.recipe import validate_train_recipe

COLUMN_HASHES = {
    "icgan": "fed27832893282fd",
    "icgan-128": "d168755f62b86642",
    "icgan-256-half": "e2b46da97f8b1f64",
    "icgan-64": "94450773f47ca742",
    "img2img-ddpm": "b6f8a35f44a9fa80",
    "img2img-sd": "e54bd6ee8026b6ff",
    "sd": "b167b9796f8cfd50",
    "sd-unclip": "baef5e224c260814",
    "tiny": "a9d00247d5e15090",
}

TRAIN_HASHES = {
    "barlow": "f6e3e933aac863fa",
    "barlow-hprob": "f5debb9da2be22c4",
    "barlow-zprob": "0f76936f850da75e",
    "byol": "38aaeef6faa45bcf",
    "dino": "8ebd612f6a742128",
    "mocov2": "078ff551e06de54e",
    "mocov3": "8c185638851eae54",
    "simclr": "61e924fa4892bbd9",
    "simsiam": "649e288f7d130785",
    "simvae": "a0929ecbd3ab76a6",
    "swav": "e4803a7a1a1ba9fc",
    "vicreg": "16ee815a80cd264a",
    "vicreg-hprob": "b737c3bf26786ee3",
    "vicreg-zprob": "d675971eb457193a",
}


def test_every_shipped_recipe_has_a_recorded_identity():
    assert sorted(COLUMN_HASHES) == available("pipelines")
    assert sorted(TRAIN_HASHES) == available("trainers")


@pytest.mark.parametrize("model", sorted(COLUMN_HASHES))
def test_column_hash_of_shipped_pipeline_is_unchanged(model):
    assert column_hash(resolve_recipe(model)) == COLUMN_HASHES[model]


OLD_RUNS = Path(__file__).parent / "fixtures" / "train_recipes_91a67c0"


@pytest.mark.parametrize("method", sorted(TRAIN_HASHES))
def test_a_run_folder_of_the_old_schema_is_the_same_run(method):
    """The resolved recipe.yaml of each shipped method as genaug wrote it before the change (fixture, its hash the
    recorded one) is, read by today's schema, the same run as today's resolved recipe: such a run folder resumes.
    New keys (data.gen_partial, loop.log_keys) take their defaults, which are what the old run did."""
    from genaug.train.resume_plan import RESUME_FREE, _resume_view, with_defaults

    old = yaml.safe_load((OLD_RUNS / f"{method}.yaml").read_text())
    assert recipe_hash(old) == TRAIN_HASHES[method]  # the fixture is what the old code wrote
    new = validate_train_recipe(load_recipe("trainers", method))
    assert set(new) == set(old) and all(k in new["data"] for k in old["data"])  # keys are only ever added
    same = [recipe_hash(_resume_view(r), RESUME_FREE) for r in (with_defaults(old), new)]
    assert same[0] == same[1]
