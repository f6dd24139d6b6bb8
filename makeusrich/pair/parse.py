"""Pair documents as users write them (files, API resources, $MAKEUSRICH_PAIR), parsed by the schema with an
error that names each bad field, and written back (`pair_document`)."""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from makeusrich.errors import PairError, excerpt
from makeusrich.files import NotRegularFile, read_regular
from makeusrich.pair.spec import (
    API_VERSION,
    KIND,
    CurrencyPair,
    CurrencyPairSpec,
    ModelSpec,
    PromotionSpec,
    ServingSpec,
)


def _wire_names() -> dict[str, str]:
    """Python field name -> the camelCase name files and the CRD use, for every field of the spec."""
    models = (CurrencyPairSpec, ModelSpec, PromotionSpec, ServingSpec)
    return {name: info.alias or name for model in models for name, info in model.model_fields.items()}


def describe_errors(exc: ValidationError, source: str) -> str:
    """One line per bad field: where it is (spec.model.window), what was given and what is allowed."""
    lines = []
    wire = _wire_names()
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {excerpt(given)})"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            field = str(error["loc"][-1]) if error["loc"] else ""
            camel = wire.get(field)
            message = (
                f"unknown field; write {camel} (pair files use the CRD's camelCase names)"
                if camel and camel != field
                else "unknown field"
            )
        lines.append(f"{where}: {message}{shown}")
    return f"{source}: invalid CurrencyPair: " + "; ".join(lines)


def parse_pair(document: Any, source: str = "pair") -> CurrencyPair:
    """Validate a decoded resource by its camelCase names only, exactly as the API server reads it (Python's
    snake_case names are for code); PairError names each bad field."""
    if not isinstance(document, dict):
        raise PairError(f"{source}: expected a CurrencyPair mapping with apiVersion, kind, metadata and spec")
    try:
        # strict: "365" is not a number of days, as the API server would not take it for an integer either
        return CurrencyPair.model_validate(document, strict=True, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise PairError(describe_errors(exc, source)) from None
    except RecursionError:
        raise PairError(f"{source}: the resource nests too deeply to be a CurrencyPair") from None


def pair_from_resource(body: Mapping[str, Any]) -> CurrencyPair:
    """A CurrencyPair as the API server returns it, validated like a file: its spec, name, namespace and uid
    (status, managed fields and the rest of the metadata are the API server's business)."""
    meta = body.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    identity = {key: meta[key] for key in ("name", "namespace", "uid") if key in meta}
    document = {
        "apiVersion": body.get("apiVersion") or API_VERSION,
        "kind": body.get("kind") or KIND,
        "metadata": identity,
        "spec": body.get("spec"),
    }
    return parse_pair(document, f"CurrencyPair {namespace}/{name}")


# A pair file is a few hundred bytes; anything near this is a mistake (or /dev/zero) and is not read further.
MAX_PAIR_BYTES = 1024 * 1024


def load_pair(path: str | Path) -> CurrencyPair:
    """Read a pair file (YAML or JSON). The first CurrencyPair document is used. Only a regular file is read: a
    FIFO or a device in a pairs folder would block the reader (O_NONBLOCK lets the open itself return)."""
    try:
        raw = read_regular(path, MAX_PAIR_BYTES + 1)
    except (NotRegularFile, IsADirectoryError):
        raise PairError(f"{path} is not a regular file; a pair file is a YAML or JSON file") from None
    except OSError as exc:
        raise PairError(f"cannot read pair file {path}: {exc.strerror or exc}") from None
    key = (hashlib.sha256(raw).digest(), str(path))
    with _PARSED_LOCK:  # the dashboard reads pair files from worker threads
        parsed = _PARSED.get(key)
        if parsed is not None:
            _PARSED.move_to_end(key)
    if parsed is None:
        parsed = parse_pair_text(raw, str(path))
        with _PARSED_LOCK:
            _PARSED[key] = parsed
            while len(_PARSED) > PARSED_KEPT:
                _PARSED.popitem(last=False)
    return parsed.model_copy(deep=True)


PARSED_KEPT = 4096
_PARSED: collections.OrderedDict[tuple[bytes, str], CurrencyPair] = collections.OrderedDict()
_PARSED_LOCK = threading.Lock()
"""Pairs parsed, by their file's sha256 and name, newest used last: the tracker and the dashboard read every pair
file every round, and YAML plus validation cost forty times the copy `load_pair` hands out. Keyed by a digest,
not the content, so that a 1 MiB file costs 32 bytes here, not a megabyte."""


def parse_pair_text(text: str | bytes, source: str) -> CurrencyPair:
    """A pair from YAML or JSON (a file's content, or $MAKEUSRICH_PAIR in a trainer Job): at most 1 MiB of UTF-8."""
    if len(text) > MAX_PAIR_BYTES:
        raise PairError(f"{source} is larger than 1 MiB; a CurrencyPair file is a few hundred bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PairError(f"{source} is not UTF-8 text (byte {exc.start} is {text[exc.start]:#04x})") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise PairError(f"{source} is not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    except RecursionError:
        raise PairError(f"{source} nests YAML too deeply to be a CurrencyPair") from None
    if not documents:
        raise PairError(f"{source} is empty; it should hold a CurrencyPair (see manifests/examples/btc-usdt.yaml)")
    pairs = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    return parse_pair(pairs[0] if pairs else documents[0], source)


PAIR_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class PairFile:
    """One pair file as read: its pair, or why it has none."""

    path: Path
    pair: CurrencyPair | None
    problem: str | None = None


def read_pair_files(folder: Path | None, files: Sequence[Path] = ()) -> list[PairFile]:
    """The pairs of `files`, then of the folder's pair files (hidden ones skipped), each validated; a file that
    declares a pair another file declared first has that as its problem (the dashboard and `up` read alike)."""
    listed = list(files)
    if folder is not None and folder.is_dir():
        listed += sorted(p for p in folder.iterdir() if p.suffix in PAIR_SUFFIXES and not p.name.startswith("."))
    read: list[PairFile] = []
    first: dict[str, Path] = {}
    for path in listed:
        try:
            pair = load_pair(path)
        except PairError as exc:
            read.append(PairFile(path, None, str(exc)))
            continue
        key = f"{pair.namespace}/{pair.name}"
        if first.setdefault(key, path) != path:
            read.append(
                PairFile(path, None, f"{path} declares {key} again (first in {first[key]}); rename or remove one")
            )
        else:
            read.append(PairFile(path, pair))
    return read


PAIR_ENV = "MAKEUSRICH_PAIR"


def load_pair_arg(path: str | None) -> CurrencyPair:
    """The pair for a command: the file given with -f, else the resource in $MAKEUSRICH_PAIR (set by the
    operator on trainer Jobs, so a Job needs no volume and no API access)."""
    if path:
        return load_pair(path)
    text = os.environ.get(PAIR_ENV)
    if not text:
        raise PairError(f"no pair given: pass -f pair.yaml or set {PAIR_ENV} to the CurrencyPair resource")
    return parse_pair_text(text, f"${PAIR_ENV}")


def pair_document(pair: CurrencyPair) -> dict[str, Any]:
    """The resource as it would be written to a file or the API server (camelCase, defaults filled)."""
    return pair.model_dump(by_alias=True, mode="json", exclude_none=True)
