"""Enumerate the images of a source: an ImageNet-style class tree, a flat folder, or existing WebDataset tars."""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from genaug.core.errors import GenaugError
from genaug.shards.tario import split_name

# torchvision.datasets.folder.IMG_EXTENSIONS, plus .jpe and .gif
IMG_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
TAR_IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")
LAYOUTS = ("auto", "imagefolder", "flat", "wds")
#: labels are non-negative integers below this (int32, what every loss and label tensor accepts)
MAX_LABEL = 2**31
_CLS_MAX_BYTES = 64


@dataclass(frozen=True)
class SourceItem:
    """One source image: where it is (a file, or a member of a tar), its label and class name when known."""

    ref: str
    label: int | None = None
    class_name: str | None = None
    tar: str | None = None
    member: str | None = None
    offset: int | None = None  # header offset of `member` in `tar` (names may repeat inside a tar)
    error: str | None = None  # set when the item is known bad at scan time: it becomes a recorded failure

    def as_plan(self) -> list:
        """A JSON-friendly tuple for the plan hash."""
        return [self.ref, self.label, self.member] + ([self.error] if self.error else [])


@dataclass
class Source:
    """An enumerated source: its layout, the sorted class list (or None) and the items in a stable order."""

    layout: str
    root: Path
    classes: list[str] | None
    items: list[SourceItem]
    skipped: list[dict]


def is_image_name(name: str) -> bool:
    """True when a file name has one of the image extensions (case-insensitive), as ImageFolder decides."""
    return name.lower().endswith(IMG_EXTENSIONS)


def _walk_files(top: Path, skipped: list[dict]) -> list[Path]:
    """Image files under `top`, following symlinks but never the same directory twice; sorted as ImageFolder does."""
    seen_dirs: set[tuple[int, int]] = set()
    out: list[Path] = []

    def visit(d: Path) -> None:
        try:
            st = d.stat()
        except OSError as e:
            skipped.append({"source": str(d), "error": f"{type(e).__name__}: {e.strerror or e}"})
            return
        ident = (st.st_dev, st.st_ino)
        if ident in seen_dirs:
            skipped.append({"source": str(d), "error": "directory symlink loop (already visited)"})
            return
        seen_dirs.add(ident)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            skipped.append({"source": str(d), "error": f"{type(e).__name__}: {e.strerror or e}"})
            return
        subdirs = []
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                subdirs.append(Path(e.path))
            elif is_image_name(e.name):
                out.append(Path(e.path))
        for sd in subdirs:
            visit(sd)

    visit(top)
    return out


def _imagefolder(root: Path, skipped: list[dict]) -> Source:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise GenaugError(f"{root} has no class folders: use --layout flat for a folder of images without labels")
    items = []
    for label, name in enumerate(classes):
        for p in _walk_files(root / name, skipped):
            items.append(SourceItem(ref=str(p), label=label, class_name=name))
    return Source("imagefolder", root, classes, items, skipped)


def _flat(root: Path, skipped: list[dict]) -> Source:
    items = [SourceItem(ref=str(p)) for p in _walk_files(root, skipped)]
    return Source("flat", root, None, items, skipped)


def _tar_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.tar") if p.is_file())


def check_label(label: object, num_classes: int | None = None) -> str | None:
    """None when `label` is a valid class index (in [0, num_classes), or [0, 2**31) without a class list), else why."""
    if isinstance(label, bool) or not isinstance(label, int):
        return f"label {label!r} is not an integer"
    top = num_classes if num_classes is not None else MAX_LABEL
    if not 0 <= label < top:
        what = f"the {num_classes} classes" if num_classes is not None else "a non-negative int32"
        return f"label {label} is out of range [0, {top}) ({what})"
    return None


def parse_cls(raw: bytes) -> tuple[int | None, str | None]:
    """(label, None) for a valid `.cls` field (ASCII decimal digits in [0, 2**31)), else (None, why)."""
    text = raw[: _CLS_MAX_BYTES + 1]
    shown = text[:20]
    try:
        s = text.decode("ascii").strip()
    except UnicodeDecodeError:
        return None, f"cls field {shown!r} is not an ASCII integer"
    if len(raw) > _CLS_MAX_BYTES or not (s.isascii() and s.isdigit()) or len(s) > 10:
        if s.startswith("-") and s[1:].isdigit() and len(s) <= 12:
            return None, f"cls field {s!r} is a negative label: labels must lie in [0, {MAX_LABEL})"
        return None, f"cls field {shown!r} is not a label in [0, {MAX_LABEL}) (decimal digits only)"
    label = int(s)
    why = check_label(label)
    return (None, f"cls field: {why}") if why else (label, None)


def _tar_samples(tf: tarfile.TarFile) -> list[tuple[str, dict[str, tarfile.TarInfo], str | None]]:
    """Samples of an input tar in order: (key, {field: member}, error); a key seen before is a duplicate (error)."""
    out: list[tuple[str, dict[str, tarfile.TarInfo], str | None]] = []
    seen: dict[str, int] = {}  # key -> position of its first sample
    for m in tf.getmembers():
        if not m.isfile():
            continue
        key, field = split_name(m.name)
        if key is None:
            continue  # no key.field name: webdataset's grouping skips it too
        field = field.lower()
        cur = out[-1] if out else None
        if cur is not None and cur[0] == key and field not in cur[1]:
            cur[1][field] = m  # consecutive members of one key form one sample, as WebDataset reads them
            continue
        error = None
        if key in seen:
            error = (
                f"duplicate key {key!r} in the input tar (its first sample is sample #{seen[key]} of that tar): "
                "the later sample is skipped, never merged"
            )
        else:
            seen[key] = len(out)
        out.append((key, {field: m}, error))
    return out


def _wds(root: Path, skipped: list[dict]) -> Source:
    items: list[SourceItem] = []
    tars = _tar_files(root)
    if not tars:
        raise GenaugError(f"{root} holds no .tar files: use --layout imagefolder or flat for image folders")
    for tpath in tars:
        try:
            with tarfile.open(tpath, "r:") as tf:
                for key, fields, error in _tar_samples(tf):
                    ref = f"{tpath}:{key}"
                    img = next((fields[f] for f in TAR_IMAGE_FIELDS if f in fields), None)
                    if error is not None:
                        items.append(
                            SourceItem(
                                ref=ref,
                                tar=str(tpath),
                                member=img and img.name,
                                offset=img and img.offset,
                                error=error,
                            )
                        )
                        continue
                    if img is None:
                        skipped.append({"source": ref, "error": "sample has no image field"})
                        continue
                    label = None
                    if "cls" in fields:
                        f = tf.extractfile(fields["cls"])
                        label, error = parse_cls(f.read(_CLS_MAX_BYTES + 1) if f is not None else b"")
                    items.append(
                        SourceItem(
                            ref=ref, label=label, tar=str(tpath), member=img.name, offset=img.offset, error=error
                        )
                    )
        except (tarfile.TarError, OSError) as e:
            skipped.append({"source": str(tpath), "error": f"unreadable tar ({type(e).__name__}: {e})"})
    return Source("wds", root, None, items, skipped)


def detect_layout(root: Path) -> str:
    """Guess the layout: tars -> wds; class sub-folders and no images on top -> imagefolder; else flat."""
    if root.is_file() and root.suffix == ".tar":
        return "wds"
    entries = list(os.scandir(root))
    has_tars = any(e.name.endswith(".tar") and e.is_file() for e in entries)
    has_images = any(is_image_name(e.name) for e in entries if not e.is_dir())
    has_dirs = any(e.is_dir() for e in entries)
    if has_tars and not has_images:
        return "wds"
    if has_dirs and not has_images:
        return "imagefolder"
    return "flat"


def enumerate_source(source: str | os.PathLike, layout: str = "auto") -> Source:
    """Enumerate a source in a stable order; the layout is guessed when `auto`."""
    root = Path(source)
    if layout not in LAYOUTS:
        raise GenaugError(f"--layout {layout!r} is unknown: choose one of {', '.join(LAYOUTS)}")
    if not root.exists():
        raise GenaugError(f"source {root} does not exist: give an image folder, a class-folder tree or WebDataset tars")
    if not root.is_dir() and not (root.is_file() and root.suffix == ".tar"):
        raise GenaugError(f"source {root} is neither a folder nor a .tar file")
    if layout == "auto":
        layout = detect_layout(root)
    skipped: list[dict] = []
    src = {"imagefolder": _imagefolder, "flat": _flat, "wds": _wds}[layout](root, skipped)
    if not src.items:
        raise GenaugError(
            f"source {root} ({layout} layout) holds no images with extensions {', '.join(IMG_EXTENSIONS)}"
        )
    return src
