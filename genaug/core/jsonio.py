"""One bounded JSON reader for every document genaug reads back: manifests, stats, leases and sample fields.

`json.loads` alone turns hostile or damaged input into a traceback (RecursionError on a 200,000-deep array) or a
silent wrong number (`NaN`, `Infinity` are accepted by Python but are not JSON). `parse_json` refuses documents
larger than a limit, nested deeper than the C parser allows (about 1,000 levels; genaug's C-coded readers and
writers handle anything below that), holding NaN/Infinity or numbers too long to be real, or not UTF-8, with one
GenaugError naming where the document came from. A depth walk in Python would cost about a second per million
shard names of a manifest, so JSON gets none; `depth_ok` is the bounded walk the YAML reader uses for recipes.
`sample_json` is the quiet form for a field of a shard sample (None when it is not valid), so a long run counts and
skips such a sample instead of dying.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genaug.core.errors import GenaugError

#: deepest nesting genaug ever writes is 4-5 levels; 64 leaves room and keeps every later walk far from recursion limits
MAX_DEPTH = 64
#: a manifest of a million shards is ~15 MB; stats, leases and sample fields are far smaller
MAX_DOC_BYTES = 64 << 20
MAX_FIELD_BYTES = 4 << 20
_MAX_NUMBER_CHARS = 400


class BadJSON(GenaugError):
    """A document that is not bounded, standard JSON."""


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_NUMBER_CHARS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def depth_ok(doc: Any, limit: int = MAX_DEPTH) -> bool:
    """True when `doc` nests at most `limit` containers deep (an iterative walk: no recursion)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return False
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return True


def parse_json(data: bytes | str, where: object, max_bytes: int = MAX_DOC_BYTES) -> Any:
    """Parse one bounded, standard JSON document; anything else is a BadJSON naming `where` and the fix."""
    fix = "delete it and rerun the stage that wrote it"
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise BadJSON(f"{where} is {len(raw)} bytes, more than the {max_bytes} a genaug document may hold: {fix}")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_constant, parse_int=_bounded_int)
    except UnicodeDecodeError as e:
        raise BadJSON(f"{where} is not valid JSON (not UTF-8 text: {e.reason} at byte {e.start}): {fix}") from None
    except RecursionError:  # the C parser counts its depth: a 200,000-deep array ends here at once
        raise BadJSON(f"{where} is not valid JSON (nested deeper than the parser allows): {fix}") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, absurd integers
        text = " ".join(str(e).split())[:200]
        raise BadJSON(f"{where} is not valid JSON ({text}): {fix}") from None
    return doc


def read_json_file(path: Path, max_bytes: int = MAX_DOC_BYTES) -> Any:
    """Read and parse a local JSON file (bounded: never more than max_bytes + 1 bytes are read)."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise GenaugError(f"{path} is missing") from None
    except IsADirectoryError:
        raise GenaugError(f"{path} is a folder, not a JSON file: remove it, rerun the stage that writes it") from None
    return parse_json(data, path, max_bytes)


def sample_json(data: bytes | str | None, max_bytes: int = MAX_FIELD_BYTES) -> Any:
    """The parsed `json` field of a shard sample, or None when it is missing or not bounded, standard JSON."""
    if data is None:
        return None
    try:
        return parse_json(data, "sample json", max_bytes)
    except GenaugError:
        return None


def record_json(data: bytes | None, where: object = "record") -> dict | None:
    """A record's parsed JSON object (completion, progress), or None when it is missing, not bounded standard JSON,
    or not an object: such a record is treated as absent, never as an error."""
    if data is None:
        return None
    try:
        doc = parse_json(data, where)
    except GenaugError:
        return None
    return doc if isinstance(doc, dict) else None
