"""One bounded YAML reader for recipes (generation and trainer recipes, a run's recipe.yaml): files a user may be
handed. PyYAML's safe loader already refuses tags that run code; this also refuses a document that expands to more
than MAX_NODES values (a few lines of nested aliases expand to billions: the "billion laughs" that hangs a later hash
or dump; aliases themselves stay allowed, since yaml.safe_dump writes them for shared values), files over MAX_BYTES,
text that is not UTF-8, and nesting deeper than jsonio.MAX_DEPTH (PyYAML's composer recurses), each with one
GenaugError naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from genaug.core.errors import GenaugError
from genaug.core.jsonio import MAX_DEPTH, depth_ok

MAX_BYTES = 1 << 20


MAX_NODES = 100_000


def expanded_size_ok(doc: Any, limit: int = MAX_NODES) -> bool:
    """True when `doc`, with every alias expanded, holds at most `limit` values (an iterative walk that stops early)."""
    stack, seen = [doc], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return False
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return True


def parse_yaml(data: bytes | str, where: object) -> Any:
    """Parse one bounded YAML document without aliases; anything else is a GenaugError naming `where`."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_BYTES:
        raise GenaugError(f"{where} is {len(raw)} bytes, more than the {MAX_BYTES} a recipe may hold")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        msg = f"{where} is not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}): save it as UTF-8"
        raise GenaugError(msg) from None
    try:
        doc = yaml.safe_load(text)
    except RecursionError:
        raise GenaugError(f"{where} is nested too deeply to be a recipe (at most {MAX_DEPTH} levels)") from None
    except yaml.YAMLError as e:
        text = " ".join(str(e).split())[:300]
        raise GenaugError(f"{where} is not valid YAML: {text}") from None
    if not expanded_size_ok(doc):  # first: the depth walk below would expand every alias too
        raise GenaugError(
            f"{where} expands to more than {MAX_NODES} values (nested YAML aliases?): a recipe is a few dozen keys; "
            "write the values out"
        )
    if not depth_ok(doc, MAX_DEPTH):
        raise GenaugError(f"{where} is nested too deeply to be a recipe (at most {MAX_DEPTH} levels)")
    return doc


def read_yaml(path: Path | Any) -> Any:
    """Read and parse a YAML file (a path or an importlib resource), bounded (see parse_yaml)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise GenaugError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise GenaugError(f"{path} is a folder, not a YAML file: give the path of a .yaml recipe") from None
    except OSError as e:
        raise GenaugError(f"{path} cannot be read ({e.strerror or e})") from None
    return parse_yaml(data, path)
