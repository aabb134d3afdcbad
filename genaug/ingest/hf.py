"""Hugging Face `datasets` sources: a save_to_disk folder, parquet files or folders, or a hub name (online only).

Everything goes through the `datasets` library (the optional extra `genaug[hf]`) and ends as a `datasets.Dataset`:
an arrow table memory-mapped from disk. A save_to_disk folder is mapped as it is; parquet files and hub sets are
converted once by `datasets` into its arrow cache (`--hf-cache-dir`, default HF_DATASETS_CACHE), batch by batch.
Ingest then fetches the image column of a few rows at a time (ROW_BATCH), in the order of its plan, so the set is
never held in memory. Random access is what makes a seeded shuffled order possible: a streamed IterableDataset
(`streaming=True`) reads rows only in their stored order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genaug.core.errors import GenaugError
from genaug.ingest.items import Source, SourceItem

INSTALL_HINT = "pip install 'genaug[hf]' (or pip install datasets)"
#: a Dataset.save_to_disk folder holds these; a DatasetDict's folder holds DICT_MARKER and one folder per split
DATASET_MARKERS = ("dataset_info.json", "state.json")
DICT_MARKER = "dataset_dict.json"
#: rows whose image bytes are fetched from the arrow table at once
ROW_BATCH = 64
#: the label of a row whose label cell is null
NULL_LABEL = -(2**63)
_INT_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_STR_TYPES = {"string", "large_string"}
_BIN_TYPES = {"binary", "large_binary"}


@dataclass(frozen=True)
class HFOptions:
    """How to read a Hugging Face dataset: its columns, hub config and split, and the cache of converted sets."""

    image_column: str | None = None
    label_column: str | None = None
    config: str | None = None
    split: str | None = None
    cache_dir: str | None = None

    def given(self) -> list[str]:
        """The flags of these options that were set."""
        flags = (
            ("--image-column", self.image_column),
            ("--label-column", self.label_column),
            ("--hf-config", self.config),
            ("--hf-split", self.split),
            ("--hf-cache-dir", self.cache_dir),
        )
        return [flag for flag, v in flags if v is not None]


def import_datasets(why: str):
    """The `datasets` module, or a one-line GenaugError saying which flag or source needs it and how to install it."""
    try:
        import datasets
    except ImportError:
        raise GenaugError(
            f"{why} needs the Hugging Face `datasets` package, which is not installed: {INSTALL_HINT}"
        ) from None
    return datasets


def is_hf_source(root: Path) -> bool:
    """True for a save_to_disk folder, a .parquet file, or a folder with .parquet files at its top (cheap checks)."""
    if root.is_file():
        return root.suffix == ".parquet"
    if not root.is_dir():
        return False
    if (root / DICT_MARKER).is_file() or all((root / m).is_file() for m in DATASET_MARKERS):
        return True
    return any(p.suffix == ".parquet" and p.is_file() for p in root.iterdir())


def _choose_split(names: list[str], opts: HFOptions, fallback: str, where: str) -> str:
    if opts.split is not None:
        if opts.split not in names:
            raise GenaugError(f"--hf-split {opts.split!r} is not a split of {where} (splits: {', '.join(names)})")
        return opts.split
    if len(names) == 1:
        return names[0]
    if fallback in names:
        return fallback
    raise GenaugError(f"{where} holds the splits {', '.join(names)}: choose one with --hf-split")


def _load(datasets, source: str, opts: HFOptions, fallback_split: str) -> tuple[object, dict]:
    """The `datasets.Dataset` of a source and what it is (kind, split, config) for the manifest."""
    root = Path(source)
    if not root.exists():  # a hub name: the same load_dataset call as parquet, with the hub's builder
        split = opts.split or fallback_split
        try:
            ds = datasets.load_dataset(source, opts.config, split=split, cache_dir=opts.cache_dir)
        except Exception as e:  # offline, unknown name, gated set, unknown config or split: all named in e
            flags = (f"--hf-config {opts.config}, " if opts.config is not None else "") + f"--hf-split {split}"
            raise GenaugError(
                f"cannot load the Hugging Face dataset {source!r} ({flags}): "
                f"{type(e).__name__}: {str(e)[:300]}: check the name, --hf-config and --hf-split (the hub needs a "
                "network connection; a local `datasets` folder or parquet needs no network)"
            ) from None
        return ds, {"kind": "hub", "name": source, "config": opts.config, "split": split}
    if opts.config is not None:
        raise GenaugError(f"--hf-config names a configuration of a hub dataset; {root} is a local path")
    if root.is_dir() and ((root / DICT_MARKER).is_file() or all((root / m).is_file() for m in DATASET_MARKERS)):
        try:
            ds = datasets.load_from_disk(str(root))
        except Exception as e:
            raise GenaugError(
                f"{root} is not a readable `datasets` save_to_disk folder ({type(e).__name__}: {e})"
            ) from None
        split = None
        if isinstance(ds, datasets.DatasetDict):
            split = _choose_split(list(ds), opts, fallback_split, str(root))
            ds = ds[split]
        elif opts.split is not None:
            raise GenaugError(f"--hf-split: {root} holds one Dataset, not a DatasetDict of splits: drop --hf-split")
        return ds, {"kind": "save_to_disk", "split": split}
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.parquet") if p.is_file())
    if not files:
        raise GenaugError(f"{root} holds no .parquet files and is not a `datasets` save_to_disk folder (--layout hf)")
    kw = {"data_files": str(root)} if root.is_file() else {"data_dir": str(root)}
    try:
        builder = datasets.load_dataset_builder("parquet", cache_dir=opts.cache_dir, **kw)
        names = sorted(str(k) for k in builder.config.data_files)
        split = _choose_split(names, opts, fallback_split, str(root))
        ds = datasets.load_dataset("parquet", split=split, cache_dir=opts.cache_dir, **kw)
    except GenaugError:
        raise
    except Exception as e:
        raise GenaugError(f"cannot read the parquet files of {root} ({type(e).__name__}: {str(e)[:300]})") from None
    return ds, {"kind": "parquet", "split": split, "files": len(files)}


def _columns(features) -> str:
    return ", ".join(f"{name} ({_describe(f)})" for name, f in features.items())


def _describe(feature) -> str:
    kind = type(feature).__name__
    return f"Value {feature.dtype}" if kind == "Value" else kind


def _image_column(datasets, features, opts: HFOptions, where: str) -> str:
    if opts.image_column is not None:
        if opts.image_column not in features:
            raise GenaugError(
                f"--image-column {opts.image_column!r} is not a column of {where} (columns: {_columns(features)})"
            )
        f = features[opts.image_column]
        if isinstance(f, datasets.Image) or (isinstance(f, datasets.Value) and f.dtype in _BIN_TYPES):
            return opts.image_column
        raise GenaugError(
            f"--image-column {opts.image_column!r} is a {_describe(f)} column, not an Image or binary column "
            f"(columns: {_columns(features)})"
        )
    found = [name for name, f in features.items() if isinstance(f, datasets.Image)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise GenaugError(
            f"{where} has no Image column (columns: {_columns(features)}): name the column of encoded images "
            "with --image-column"
        )
    raise GenaugError(f"{where} has several Image columns ({', '.join(found)}): choose one with --image-column")


def _label_column(datasets, features, opts: HFOptions, where: str) -> tuple[str | None, str | None]:
    """(column, kind) with kind ClassLabel, int or string; (None, None) for an unlabeled set."""
    name = opts.label_column
    if name is None:
        found = [n for n, f in features.items() if isinstance(f, datasets.ClassLabel)]
        if len(found) > 1:
            raise GenaugError(
                f"{where} has several ClassLabel columns ({', '.join(found)}): choose one with --label-column"
            )
        if not found:
            return None, None
        name = found[0]
    if name not in features:
        raise GenaugError(f"--label-column {name!r} is not a column of {where} (columns: {_columns(features)})")
    f = features[name]
    if isinstance(f, datasets.ClassLabel):
        return name, "ClassLabel"
    if isinstance(f, datasets.Value) and f.dtype in _INT_TYPES:
        return name, "int"
    if isinstance(f, datasets.Value) and f.dtype in _STR_TYPES:
        return name, "string"
    raise GenaugError(
        f"--label-column {name!r} is a {_describe(f)} column, not a ClassLabel, integer or string column "
        f"(columns: {_columns(features)})"
    )


def _labels(ds, column: str, kind: str, features) -> tuple[np.ndarray, list[str] | None]:
    """Every row's label id (NULL_LABEL for a null cell) and the class names: read from the label column alone."""
    values = ds.select_columns([column]).with_format("arrow")[column].to_pylist()
    if kind == "string":
        classes = sorted({v.strip() for v in values if isinstance(v, str) and v.strip()})
        index = {c: i for i, c in enumerate(classes)}
        ids = [index[v.strip()] if isinstance(v, str) and v.strip() else NULL_LABEL for v in values]
        return np.asarray(ids, dtype=np.int64), classes
    ids = [NULL_LABEL if v is None else int(v) for v in values]
    classes = list(features[column].names) if kind == "ClassLabel" else None
    return np.asarray(ids, dtype=np.int64), classes


class RowItems(Sequence):
    """The rows of a dataset as SourceItems, made on demand (a million rows are one int64 array, not a list)."""

    def __init__(self, n: int, labels: np.ndarray | None, classes: list[str] | None) -> None:
        self.n, self.labels, self.classes = n, labels, classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self._item(i % self.n)

    def _item(self, j: int) -> SourceItem:
        if self.labels is None:
            return SourceItem(ref=f"row {j}", row=j)
        v = int(self.labels[j])
        if v == NULL_LABEL:
            return SourceItem(ref=f"row {j}", row=j, error="the row's label is empty (null in the label column)")
        name = self.classes[v] if self.classes is not None and 0 <= v < len(self.classes) else None
        return SourceItem(ref=f"row {j}", label=v, class_name=name, row=j)


def scan_hf(source: str, opts: HFOptions, progress: bool = False, fallback_split: str = "train") -> Source:
    """Open a Hugging Face dataset (folder, parquet or hub name) and plan its rows: image column, labels, classes."""
    where = "--layout hf" if Path(source).exists() else f"--layout hf (the hub name {source!r})"
    datasets = import_datasets(where)
    if progress:
        datasets.enable_progress_bars()
    else:
        datasets.disable_progress_bars()
    ds, what = _load(datasets, source, opts, fallback_split)
    where = f"the dataset {source}" + (f" (split {what['split']})" if what.get("split") else "")
    features = ds.features
    image = _image_column(datasets, features, opts, where)
    label, kind = _label_column(datasets, features, opts, where)
    labels, classes = _labels(ds, label, kind, features) if label is not None else (None, None)
    n = len(ds)
    if n == 0:
        raise GenaugError(f"{where} has no rows")
    images = ds.select_columns([image]).with_format("arrow")
    is_struct = isinstance(features[image], datasets.Image)

    def read_rows(rows: list[int]) -> list[tuple[bytes | None, str | None, str | None]]:
        out: list[tuple[bytes | None, str | None, str | None]] = []
        for cell in images[rows].column(0).to_pylist():
            data, path = (cell.get("bytes"), cell.get("path")) if is_struct and cell else (cell, None)
            if data:
                out.append((data, None, None))
            elif path:
                out.append((None, path, None))  # an Image cell that refers to a file: read like any source file
            else:
                out.append((None, None, "the row's image is empty (null in the image column)"))
        return out

    identity = {"image_column": image, "label_column": label, "label_type": kind, "rows": n, **what}
    info = {**identity, "features": {k: _describe(f) for k, f in features.items()}}
    info["fingerprint"] = getattr(ds, "_fingerprint", None)
    return Source(
        "hf",
        Path(source),
        classes,
        RowItems(n, labels, classes),
        [],
        identity={"hf": identity},
        info={"hf": info},
        read_rows=read_rows,
    )
