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
    "score": {"core", "shards", "data", "generate"},  # scores a column in its generator's feature space
    "export": {"core", "ssl"},  # a trained backbone as a timm or torchvision file
    "fit": {"core", "shards", "data", "train"},  # trains a diffusers UNet with the trainer's checkpoints
    "testing": {"core", "shards", "data", "ssl", "ingest", "generate", "score", "fit", "train"},  # tiny sets, models
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


def module_of(path: Path, root: Path = ROOT) -> str:
    """Dotted module name of a file under the package (a package's __init__ is the package itself)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> genaug modules it imports (function-level imports too), each resolved to a module file."""
    known = {module_of(p, root): p for p in root.rglob("*.py")}
    pkg = root.name

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in known.items():
        out = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for b in ast.walk(tree) if isinstance(b, ast.If) and ast.unparse(b.test).endswith(
            "TYPE_CHECKING") for s in b.body for n in ast.walk(s)}  # fmt: skip
        for node in ast.walk(tree):
            if id(node) in typing_only:  # `if TYPE_CHECKING:` imports never run
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                           for a in node.names]  # fmt: skip
            for t in targets:
                if t.split(".")[0] == pkg and (r := resolve(t)) and r != mod:
                    out.add(r)
        graph[mod] = out
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan, iterative): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    group.append(m)
                    if m == node:
                        break
                if len(group) > 1:
                    out.append(sorted(group))
    return out


def test_no_import_circle_between_modules():
    """No two modules import each other, directly or through others (imports inside functions count too)."""
    circles = import_circles(import_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_check_sees_a_circle(tmp_path):
    """The check itself can fail: a.py importing b inside a function and b.py importing a is a circle."""
    root = tmp_path / "genaug"
    (root / "x").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "x" / "__init__.py").write_text("")
    (root / "x" / "a.py").write_text("def f():\n    from genaug.x.b import g\n")
    (root / "x" / "b.py").write_text("from genaug.x import a\n")
    (root / "x" / "c.py").write_text("from genaug.x.a import f\n")
    assert import_circles(import_graph(root)) == [["genaug.x.a", "genaug.x.b"]]
