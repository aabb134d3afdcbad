"""`genaug verify`: check every shard of a set against its stats and manifest, and the alignment of its columns."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

from genaug.core.errors import GenaugError
from genaug.core.jsonio import sample_json
from genaug.shards.complete import finish_folder, load_record, record_problem
from genaug.shards.index import IndexMismatch, check_index, read_index
from genaug.shards.layout import (
    RECORD_NAME,
    SHARD_RE,
    ShardSet,
    check_key,
    column_command,
    is_unlisted,
    status_command,
    verify_command,
)
from genaug.shards.manifest import column_source_problem, read_manifest
from genaug.shards.reader import is_image_field
from genaug.shards.scores import fidelity_problem
from genaug.shards.storage import Location, RemotePath, as_location
from genaug.shards.tario import read_samples
from genaug.shards.writer import read_stats

#: on a host that cannot be listed, verify gives up on a folder after this many named shards are missing in a row
MAX_MISSING_IN_A_ROW = 8


@dataclass
class FolderReport:
    """What verify found in one folder of shards."""

    folder: Location
    shards: int = 0
    samples: int = 0
    failures: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    keys: dict[str, list[str]] = field(default_factory=dict)
    record_problems: list[str] = field(default_factory=list)  # about complete.json only (also in problems)
    record_missing: bool = False  # complete and sound, but without a completion record (written before records)


def _required(kind: str, manifest: dict, sample: dict) -> list[str]:
    if kind == "scores":  # a score side column (genaug score): one json per sample
        return ["json"]
    if kind == "generated":
        meta = sample_json(sample.get("json", b"{}"))
        if not isinstance(meta, dict):
            return ["json (valid)"]
        if meta.get("failed"):
            return ["json"]
        return ["json"] + [f"gen_{k}.jpg" for k in range(int(manifest.get("k", 0)))]
    need = ["json"]
    if manifest.get("classes") is not None:
        need.append("cls")
    if not any(is_image_field(f) for f in sample if not f.startswith("__")):
        need.append("jpg|png|webp")
    return need


def verify_folder(folder: Location, check_sha: bool = True) -> FolderReport:
    """Check one folder (a source split or a generated column split) against its manifest and stats."""
    folder = as_location(folder)
    rep = FolderReport(folder)
    try:
        manifest = read_manifest(folder)
    except GenaugError as e:
        rep.problems.append(str(e))
        return rep
    kind = manifest.get("kind", "source")
    names = manifest.get("shards") or []
    per_shard, planned = manifest.get("samples_per_shard"), manifest.get("num_planned")
    unlisted = is_unlisted(folder)  # a read-only host: each named shard is probed as it comes, never all up front
    listing = [] if unlisted else list(folder.iterdir())
    on_disk = sorted(p.name for p in listing if SHARD_RE.match(p.name))
    missing_run = 0
    for extra in sorted(set(on_disk) - set(names)):
        rep.problems.append(f"{folder / extra}: tar is not in manifest.json")
    for p in sorted((p for p in listing if ".tmp-" in p.name), key=str):
        rep.notes.append(f"{p}: temporary file (a writer is running, or one crashed: a rerun deletes it)")
    seen: dict[str, dict] = {}
    for i, name in enumerate(names):
        tar = folder / name
        index = int(name[:6])
        stats = read_stats(folder, index)
        if stats is not None:
            seen[name] = stats
        if name not in on_disk and not (unlisted and tar.is_file()):
            rep.problems.append(f"{tar}: missing (not written yet, or deleted): rerun the stage that writes it")
            missing_run += 1
            if unlisted and missing_run >= MAX_MISSING_IN_A_ROW and i + 1 < len(names):
                rep.problems.append(
                    f"{folder}: stopped after {missing_run} missing shards in a row, {len(names) - i - 1} more not "
                    "probed: the manifest names shards this host does not serve; check the URL or republish the set"
                )
                break
            continue
        missing_run = 0
        if stats is None:
            rep.problems.append(f"{tar}: no valid stats file {index:06d}.json, so it is not complete: rerun to redo it")
            continue
        data = tar.read_bytes()
        if len(data) != stats.get("bytes"):
            rep.problems.append(f"{tar}: size {len(data)} differs from stats ({stats.get('bytes')}): rerun to redo it")
            continue
        if check_sha and hashlib.sha256(data).hexdigest() != stats.get("sha256"):
            rep.problems.append(f"{tar}: sha256 differs from its stats: the file changed after commit")
            continue
        _check_index(rep, folder, index, stats, data, kind)
        keys: list[str] = []
        try:
            for sample in read_samples(io.BytesIO(data)):
                key = sample["__key__"]
                try:
                    check_key(key)
                except GenaugError as e:
                    rep.problems.append(f"{tar}: {e}")
                if kind in ("generated", "scores"):
                    bad = fidelity_problem(sample_json(sample.get("json")))
                    if bad:
                        rep.problems.append(f"{tar}: sample {key} {bad}")
                missing = [f for f in _required(kind, manifest, sample) if f not in sample]
                if missing:
                    rep.problems.append(f"{tar}: sample {key} lacks {', '.join(missing)}")
                keys.append(key)
        except Exception as e:
            rep.problems.append(f"{tar}: unreadable tar ({type(e).__name__}: {e})")
            continue
        if len(set(keys)) != len(keys):
            rep.problems.append(f"{tar}: duplicate keys")
        if len(keys) != stats.get("count"):
            rep.problems.append(f"{tar}: {len(keys)} samples but stats say {stats.get('count')}")
        nfail = len(stats.get("failures") or [])
        if kind == "source" and per_shard and planned is not None:
            expect = min(per_shard, planned - i * per_shard)
            if len(keys) + nfail != expect:
                rep.problems.append(f"{tar}: {len(keys)} samples + {nfail} failures, but {expect} were planned")
        rep.keys[name] = keys
        rep.shards += 1
        rep.samples += len(keys)
        rep.failures += nfail
    _check_record(folder, manifest, seen, {p.name for p in listing}, rep)
    return rep


def _check_index(rep: FolderReport, folder: Location, index: int, stats: dict, data: bytes, kind: str) -> None:
    """Check the member index its stats record against the tar's bytes (offsets, sizes, CRC-32 of every member)."""
    if "index" not in stats:
        if kind == "generated":
            rep.notes.append(
                f"{folder / stats.get('shard', '')}: no member index (written before indexes): the stream reads it "
                "whole; `genaug index --shards SET --gen NAME` adds one"
            )
        return
    try:
        doc, _ = read_index(folder, index, stats)
    except IndexMismatch as e:
        rep.problems.append(f"{e}: rebuild it with {_index_command(folder, kind)}")
        return
    for p in check_index(doc, data, stats):
        where = folder / stats.get("index", {}).get("name", "")
        rep.problems.append(f"{where}: {p}: delete it, then rebuild it with {_index_command(folder, kind)}")


def _index_command(folder: Location, kind: str) -> str:
    """The hint that rebuilds a member index: `genaug index` for a generated column, ingest again for a source split."""
    if kind == "generated":
        return column_command("index", folder)
    return "`genaug ingest` (rerun the ingest that wrote this split; `genaug index` indexes generated columns)"


def _check_record(folder: Location, manifest: dict, seen: dict[str, dict], listed: set[str], rep: FolderReport) -> None:
    """The folder's completion record against its manifest and each shard's stats (which the tars were checked by)."""
    path = folder / RECORD_NAME
    fix = (
        f"run {verify_command(folder, '--write-records')} to renew it "
        "(or delete it: the stream then opens shard by shard)"
    )
    doc = load_record(folder) if RECORD_NAME in listed or is_unlisted(folder) else None
    if doc is None:
        if RECORD_NAME in listed:
            rep.record_problems.append(f"{path}: not a valid JSON document: {fix}")
        elif not rep.problems and manifest.get("shards"):
            rep.record_missing = True  # the stream opens it shard by shard; --write-records adds the record
    else:
        why = record_problem(doc, manifest)
        if why is not None:
            rep.record_problems.append(f"{path}: {why}: {fix}")
        else:
            for entry in doc["shards"]:
                st = seen.get(entry["name"])
                if st is None:
                    rep.record_problems.append(f"{path}: lists {entry['name']}, which has no stats: {fix}")
                    continue
                bad = [k for k in ("count", "bytes", "sha256") if entry.get(k) != st.get(k)]
                if bad:
                    rep.record_problems.append(
                        f"{path}: the {', '.join(bad)} of {entry['name']} differ from its stats and tar: {fix}"
                    )
    rep.problems.extend(rep.record_problems)


def write_records(reports: list[FolderReport]) -> None:
    """Write (or renew) the completion record of every folder whose only problems were about that record."""
    for rep in reports:
        if rep.problems != rep.record_problems or (isinstance(rep.folder, RemotePath) and not rep.folder.writable):
            continue
        if rep.record_problems or rep.record_missing:
            if finish_folder(rep.folder) is not None:
                rep.problems, rep.record_problems, rep.record_missing = [], [], False
                rep.notes.append(f"{rep.folder / RECORD_NAME}: written")


def verify_set(shards: str, check_sha: bool = True, write: bool = False) -> tuple[list[FolderReport], list[str]]:
    """Verify every split and generated column of a shard set; returns the reports and all problems.

    `write`: give every folder that checks out its completion record (renewing a stale one)."""
    sset = ShardSet.open(shards)
    reports, problems = [], []
    splits = sset.splits()
    if not splits:
        problems.append(f"{sset.root}: no split with a manifest.json: run `genaug ingest SOURCE --shards {shards}`")
    src_reports = {}
    for split in splits:
        rep = verify_folder(sset.split_dir(split), check_sha)
        reports.append(rep)
        src_reports[split] = rep
    sides = [("gen", col, split) for col in sset.columns() for split in sset.column_splits(col)]
    sides += [("scores", col, split) for col in sset.score_columns() for split in sset.column_splits(col, "scores")]
    for kind, col, split in sides:
        folder = sset.gen_dir(col, split) if kind == "gen" else sset.scores_dir(col, split)
        rep = verify_folder(folder, check_sha)
        reports.append(rep)
        src = src_reports.get(split)
        if src is None:
            rep.problems.append(f"{folder}: {kind} column for split {split!r}, which has no source shards")
            continue
        try:
            src_man, col_man = read_manifest(sset.split_dir(split)), read_manifest(folder)
        except GenaugError:
            continue
        src_names, gen_names = src_man.get("shards"), col_man.get("shards")
        foreign = column_source_problem(folder, col_man, sset.split_dir(split), src_man)
        if foreign:
            rep.problems.append(foreign)
        if kind == "gen" and col_man.get("update") is not None:
            rep.problems.append(
                f"{folder}: an update (generate --update) is unfinished: rerun that command to finish it "
                f"({status_command(folder)} shows what is left)"
            )
        elif kind == "gen":
            stale = [n for n in rep.keys if (read_stats(folder, int(n[:6])) or {}).get("recipe_hash") not in
                     (None, col_man.get("recipe_hash"))]  # fmt: skip
            if stale:
                rep.problems.append(
                    f"{folder / stale[0]}: made with another recipe than the column's ({len(stale)} shards): "
                    "rerun `genaug generate` for this column"
                )
        if src_names != gen_names:
            rep.problems.append(f"{folder}: its shard list differs from the source split's: regenerate the column")
        for name, keys in rep.keys.items():
            if name in src.keys and src.keys[name] != keys:
                rep.problems.append(f"{folder / name}: keys are not those of the source shard, in the same order")
    if write:
        write_records(reports)
    for rep in reports:
        problems.extend(rep.problems)
    return reports, problems
