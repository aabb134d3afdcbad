"""The package layout: each room imports only the rooms below it (data flows one way), checked on every import."""

from __future__ import annotations

import ast
from pathlib import Path

import genaug

ROOT = Path(genaug.__file__).parent

# room -> rooms it may import (besides itself and the `genaug` package root, which holds only __version__)
ALLOWED = {
    "core": set(),
    "shards": {"core"},
    "data": {"core", "shards"},
    "ssl": {"core"},
    "ingest": {"core", "shards"},
    "generate": {"core", "shards", "data"},
    "train": {"core", "shards", "data", "ssl"},
    "evaluate": {"core", "shards", "data", "ssl"},
    "inspect": {"core", "shards", "data"},
    "export": {"core", "ssl"},  # a trained backbone as a timm or torchvision file
    "testing": {"core", "shards", "data", "ssl", "ingest", "generate", "train"},  # builds tiny sets, models, runs
}
TOP = {"cli", "demo", "__main__", "__init__"}  # the CLI and the demo put every stage together


def room_of(path: Path) -> str:
    """The room of a module file: its first folder under genaug/, or its module name for top-level files."""
    rel = path.relative_to(ROOT)
    name = rel.parts[0]
    if name.endswith(".py"):
        name = name[:-3]
    return "inspect" if name == "inspect_cli" else name


def genaug_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported room) of every genaug import in a file, including imports inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "genaug" else [f"genaug.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "genaug" and len(parts) > 1:
                room = "inspect" if parts[1] == "inspect_cli" else parts[1]
                out.append((node.lineno, room))
    return out


def test_every_room_is_known():
    """A new folder under genaug/ must be given its place in ALLOWED."""
    rooms = {room_of(p) for p in ROOT.rglob("*.py")}
    assert rooms <= set(ALLOWED) | TOP, rooms - set(ALLOWED) - TOP


def test_no_import_runs_back_up():
    """No module imports a room that is not below its own."""
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        room = room_of(path)
        if room in TOP:
            continue
        for line, target in genaug_imports(path):
            if target in ("__version__",) or target == room or target in ALLOWED[room]:
                continue
            bad.append(f"{path.relative_to(ROOT.parent)}:{line} ({room}) imports genaug.{target}")
    assert not bad, "imports against the layout:\n" + "\n".join(bad)


def test_the_walker_sees_a_wrong_import(tmp_path):
    """The check itself can fail: a data module importing train is reported."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from genaug.train.loop import Trainer\n")
    assert genaug_imports(f) == [(2, "train")]
