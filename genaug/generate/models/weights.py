"""A local diffusers folder (--weights DIR) checked before loading: a missing component or file is named."""

from __future__ import annotations

import json
from pathlib import Path

from genaug.core.errors import GenaugError

CONFIG_NAMES = ("config.json", "scheduler_config.json", "preprocessor_config.json", "tokenizer_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# components whose class carries weights (a scheduler, tokenizer or feature extractor has only a config)
WEIGHTED = ("unet", "vae", "text_encoder", "image_encoder", "image_noising_scheduler_weights", "prior", "transformer")


def check_weights_folder(folder: Path, model_id: str | None) -> None:
    """Raise a one-line error naming what a saved pipeline folder lacks (model_index.json, a component, a file)."""
    folder = Path(folder)
    fix = f"re-download it (`hf download {model_id} --local-dir {folder}`) or pass another --weights"
    index = folder / "model_index.json"
    if not index.is_file():
        raise GenaugError(
            f"--weights {folder}: no model_index.json there; give a folder saved by save_pretrained or {fix}"
        )
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GenaugError(f"--weights {index} is not valid JSON ({e}): {fix}") from None
    for name, spec in doc.items():
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[0] is None:
            continue
        sub = folder / name
        if not sub.is_dir():
            raise GenaugError(f"--weights {folder}: component {name}/ is missing (model_index.json lists it): {fix}")
        if not any((sub / c).is_file() for c in CONFIG_NAMES) and not any(sub.glob("*.json")):
            raise GenaugError(f"--weights {folder}: {name}/ has no config file: {fix}")
        if name in WEIGHTED and not any(p.suffix in WEIGHT_SUFFIXES for p in sub.iterdir()):
            raise GenaugError(
                f"--weights {folder}: {name}/ holds no weights file (*.safetensors or *.bin; partial download?): {fix}"
            )
        for part in sub.glob("*.index.json"):  # sharded weights: every shard the index names must be there
            try:
                files = set(json.loads(part.read_text(encoding="utf-8")).get("weight_map", {}).values())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise GenaugError(f"--weights {part} is not valid JSON: {fix}") from None
            missing = sorted(f for f in files if not (sub / f).is_file())
            if missing:
                raise GenaugError(
                    f"--weights {folder}: {name}/{missing[0]} is missing ({len(missing)} shard(s)): {fix}"
                )
