"""Where a served model comes from, and how a version is checked before it may answer requests.

Two sources, one loading path:

- StoreSource: a pair in the model store (contract 3). The promoted version is whatever latest.json names; the
  model file is checked against the sha256 in the version's metadata.json and in latest.json.
- FolderSource: a Triton model repository on disk, as KServe mounts a storageUri at /mnt/models
  (`<dir>/<name>/config.pbtxt`, `<dir>/<name>/<n>/model.onnx`, and our `<dir>/metadata.json` beside them).

A version is served only after it loaded into onnxruntime, its graph matched contract 2 (and its metadata and
config.pbtxt, when present), and a smoke inference returned finite positive prices: on the real window the
trainer recorded in metadata.json (`smokeTest`, which must also give the recorded forecast), or, for a model
without one, on flat windows from one to a hundred thousand (a model may fail only at real prices). A model
with a `quantiles` output (forecast ranges) must also answer sound ones: ascending along the levels its
metadata.json names, the median equal to the forecast, and equal to the recorded ones. Models from before
ranges (a `forecast` output alone) load and serve as they always did. Anything else raises LoadRefused with
the reason; the caller keeps serving what it had.

Nothing here imports kserve or torch: the checks run in tests and tools without either.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import re
import resource
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import onnx
import onnxruntime as ort

from makeusrich.contract import (
    FIELDS,
    INPUT_NAME,
    OUTPUT_NAME,
    QUANTILES_NAME,
    TensorSpec,
    input_spec,
    iso_z,
    level_problem,
    median_index,
    model_name,
    output_spec,
    quantiles_spec,
)
from makeusrich.errors import ConfigError, LoadRefused, MakeUsRichError, NotFoundError, StoreError
from makeusrich.onnxrt import onnx_session
from makeusrich.serving.triton import config_problems, read_config
from makeusrich.serving.validation import Signature, rfc3339
from makeusrich.store import LATEST, ModelMetadata, ObjectStore, PairStore, open_store, parse_metadata, sha256

log = logging.getLogger(__name__)

SMOKE_PRICES = (1.0, 100.0, 10_000.0, 100_000.0)
SMOKE_VOLUME = 10.0
# How far a forecast may drift from the one the trainer recorded for the same window (onnxruntime builds differ
# in the last bits; a different model differs far more).
SMOKE_RTOL = 1e-3
# How far the median quantile may be from the forecast of the same run: the graph computes both from one value.
MEDIAN_RTOL = 1e-5


@dataclass(frozen=True)
class Candidate:
    """What a source says should be served now. `key` changes whenever that changes (a new version, or the
    same version re-promoted or rewritten), so a poll compares keys instead of loading anything."""

    key: str
    version: str
    where: str
    model_sha256: str | None = None


@dataclass(frozen=True)
class Artifact:
    """The bytes of a candidate, checksums verified, with whatever describes it."""

    candidate: Candidate
    model: bytes
    metadata: ModelMetadata | None
    config: str | None
    folder_name: str


class ModelSource(Protocol):
    @property
    def name(self) -> str:
        """The model's name on the v2 endpoints: the pair's resource name."""
        ...

    @property
    def namespace(self) -> str | None:
        """The pair's namespace, when the source knows it (a store does; a mounted folder does not)."""
        ...

    def describe(self) -> str: ...

    def current(self) -> Candidate | None:
        """The version to serve now, or None when there is none yet. Blocking I/O."""
        ...

    def fetch(self, candidate: Candidate) -> Artifact:
        """The candidate's files; LoadRefused when they are missing or damaged. Blocking I/O."""
        ...


@dataclass(frozen=True)
class StoreSource:
    """One pair's promoted version in the model store."""

    store: PairStore
    model_name: str | None = None  # the name it is served as, when not the pair's (a server of every namespace)

    @property
    def name(self) -> str:
        return self.model_name or self.store.pair

    @property
    def namespace(self) -> str | None:
        return self.store.namespace

    def describe(self) -> str:
        return self.store.objects.uri(self.store.prefix + LATEST)

    def current(self) -> Candidate | None:
        latest = self.store.latest()
        if latest is None:
            return None
        return Candidate(
            key=f"{latest.version}/{latest.model_sha256}/{latest.promoted_at}",
            version=latest.version,
            where=self.store.storage_uri(latest.version),  # where it is read from (a copied store keeps old URIs)
            model_sha256=latest.model_sha256,
        )

    def fetch(self, candidate: Candidate) -> Artifact:
        store = self.store
        try:
            metadata = store.model_metadata(candidate.version)
            recorded = metadata.files.get(store.model_path())
            if recorded is None:
                raise LoadRefused(f"metadata.json of version {candidate.version} records no {store.model_path()}")
            if candidate.model_sha256 is not None and recorded.sha256 != candidate.model_sha256:
                raise LoadRefused(
                    f"latest.json and metadata.json of version {candidate.version} disagree on the model's sha256"
                )
            model = store.read_file(candidate.version, store.model_path(), recorded.sha256)
            config_file = metadata.files.get(store.config_path())
            config = None
            if config_file is not None:
                config = store.read_file(candidate.version, store.config_path(), config_file.sha256).decode()
        except NotFoundError as exc:
            raise LoadRefused(f"version {candidate.version} is incomplete in the store: {exc}") from None
        except StoreError as exc:
            raise LoadRefused(str(exc)) from None
        return Artifact(candidate, model, metadata, config, store.pair)


@dataclass(frozen=True)
class FolderSource:
    """A Triton model folder: `<root>/<name>/<n>/model.onnx` (highest n wins) with `config.pbtxt` beside the
    numbered folders and, optionally, the trainer's metadata.json in `<root>` (KServe mounts the whole
    storageUri, which holds it)."""

    root: Path
    name: str
    namespace: str | None = None  # a folder does not say (an InferenceService serves its own namespace's pair)

    def describe(self) -> str:
        return str(self.root / self.name)

    def _model_file(self) -> tuple[str, Path] | None:
        folder = self.root / self.name
        if not folder.is_dir():
            return None
        numbered = sorted(
            (int(p.name), p) for p in folder.iterdir() if p.name.isdecimal() and (p / "model.onnx").is_file()
        )
        if not numbered:
            return None
        number, path = numbered[-1]
        return str(number), path / "model.onnx"

    def _metadata(self) -> ModelMetadata | None:
        path = self.root / "metadata.json"
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LoadRefused(f"{path} is not readable JSON: {exc}") from None
        if not isinstance(value, dict) or value.get("pair", self.name) != self.name:
            return None  # describes another model: ignore it
        try:
            return parse_metadata(value, str(path))
        except StoreError as exc:
            raise LoadRefused(str(exc)) from None

    def current(self) -> Candidate | None:
        found = self._model_file()
        if found is None:
            return None
        number, path = found
        stat = path.stat()
        try:
            metadata = self._metadata()
        except LoadRefused:
            metadata = None
        version = metadata.version if metadata else number
        return Candidate(key=f"{version}/{number}/{stat.st_mtime_ns}/{stat.st_size}", version=version, where=str(path))

    def fetch(self, candidate: Candidate) -> Artifact:
        found = self._model_file()
        if found is None:
            raise LoadRefused(f"{self.describe()} holds no <n>/model.onnx")
        number, path = found
        try:
            model = path.read_bytes()
            config_path = self.root / self.name / "config.pbtxt"
            config = config_path.read_text() if config_path.is_file() else None
        except OSError as exc:
            raise LoadRefused(f"cannot read {path}: {exc.strerror or exc}") from None
        metadata = self._metadata()
        if metadata is not None:
            entry = metadata.files.get(f"{self.name}/{number}/model.onnx")
            if entry is not None and entry.sha256 != sha256(model):
                raise LoadRefused(f"{path} does not match the sha256 recorded in {self.root / 'metadata.json'}")
        return Artifact(candidate, model, metadata, config, self.name)


def discover_store_pairs(objects: ObjectStore, namespace: str) -> list[str]:
    """Every pair of a namespace that has a latest.json."""
    prefix = f"{namespace}/"
    pattern = re.compile(rf"^{re.escape(prefix)}([^/]+)/{re.escape(LATEST)}$")
    return sorted({m.group(1) for key in objects.list(prefix) if (m := pattern.match(key))})


def discover_every_pair(objects: ObjectStore) -> list[tuple[str, str]]:
    """Every (namespace, pair) of a store that has a latest.json."""
    pattern = re.compile(rf"^([^/]+)/([^/]+)/{re.escape(LATEST)}$")
    return sorted({(m.group(1), m.group(2)) for key in objects.list("") if (m := pattern.match(key))})


def store_sources(url: str, namespace: str, pairs: list[str] | None, all_namespaces: bool = False) -> list[StoreSource]:
    """The pairs to serve: those named, every one of a namespace, or (`all_namespaces`) every one of the store,
    each named as contract.model_name says."""
    objects = open_store(url)
    if all_namespaces:
        return [
            StoreSource(PairStore(objects, space, name), model_name(space, name))
            for space, name in discover_every_pair(objects)
        ]
    names = pairs if pairs else discover_store_pairs(objects, namespace)
    return [StoreSource(PairStore(objects, namespace, name)) for name in names]


def folder_sources(root: str | Path) -> list[FolderSource]:
    """The model folders of a Triton repository; a clear error when there are none."""
    base = Path(root)
    if not base.is_dir():
        raise MakeUsRichError(f"--model-dir {base} is not a folder")
    found = [
        FolderSource(base, p.name)
        for p in sorted(base.iterdir())
        if p.is_dir() and ((p / "config.pbtxt").is_file() or any(p.glob("[0-9]*/model.onnx")))
    ]
    if not found:
        raise MakeUsRichError(
            f"{base} holds no Triton model folder: expected {base}/<name>/config.pbtxt and <name>/1/model.onnx, "
            "as the trainer publishes a version (storageUri)"
        )
    return found


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else -1 for d in shape)


def graph_signature(session: ort.InferenceSession, levels: Sequence[float] | None = None) -> Signature:
    """The served signature, read from the graph itself with the quantile levels its metadata.json names;
    LoadRefused unless it is contract 2's: outputs [forecast], or [forecast, quantiles] for models with ranges."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = [o.name for o in outputs]
    if [i.name for i in inputs] != [INPUT_NAME] or names not in ([OUTPUT_NAME], [OUTPUT_NAME, QUANTILES_NAME]):
        raise LoadRefused(
            f"the graph's inputs {[i.name for i in inputs]} and outputs {names} are not [{INPUT_NAME!r}] and "
            f"[{OUTPUT_NAME!r}] or [{OUTPUT_NAME!r}, {QUANTILES_NAME!r}]"
        )
    source, target = inputs[0], outputs[0]
    for tensor in (source, *outputs):
        if tensor.type != "tensor(float)":
            raise LoadRefused(f"the graph's {tensor.name!r} is {tensor.type}; inputs and outputs must be tensor(float)")
    shape_in, shape_out = _dims(source.shape), _dims(target.shape)
    if len(shape_in) != 3 or shape_in[1] < 1 or shape_in[2] != len(FIELDS):
        raise LoadRefused(f"the graph's input shape is {source.shape}, not [batch, window, {len(FIELDS)}]")
    if len(shape_out) != 2 or shape_out[1] < 1:
        raise LoadRefused(f"the graph's output shape is {target.shape}, not [batch, horizon]")
    candles, forecast = input_spec(shape_in[1]), output_spec(shape_out[1])
    if len(outputs) == 1:
        if levels is not None:
            raise LoadRefused(f"metadata.json names quantile levels but the graph has no {QUANTILES_NAME!r} output")
        return Signature(candles, forecast)
    return Signature(candles, forecast, *quantiles_output(_dims(outputs[1].shape), shape_out[1], levels))


def quantiles_output(
    shape: tuple[int, ...], horizon: int, levels: Sequence[float] | None
) -> tuple[TensorSpec, tuple[float, ...]]:
    """The quantiles output's spec and levels, checked against the forecast's horizon and metadata.json. A
    levels dimension the graph leaves symbolic is taken from metadata.json; the smoke test checks it."""
    if levels is None:
        raise LoadRefused(
            f"the graph has a {QUANTILES_NAME!r} output but no metadata.json names its levels (`quantiles`)"
        )
    if (problem := level_problem(tuple(levels))) is not None:
        raise LoadRefused(f"metadata.json's {problem}")
    if len(shape) != 3 or shape[1] not in (-1, horizon):
        raise LoadRefused(
            f"the graph's {QUANTILES_NAME!r} shape is {list(shape)}, not [batch, {horizon}, levels] like its forecast"
        )
    if shape[2] not in (-1, len(levels)):
        raise LoadRefused(levels_mismatch(len(levels), shape[2]))
    return quantiles_spec(horizon, len(levels)), tuple(float(v) for v in levels)


def levels_mismatch(named: int, found: int) -> str:
    """One sentence for both places that can see it: the graph's shape, or the smoke answer's."""
    return f"metadata.json names {named} quantile levels but the graph's quantiles have {found}"


def flat_windows(window: int, prices: tuple[float, ...] = SMOKE_PRICES) -> np.ndarray:
    """One window of flat candles per price: any model that learned anything answers each with a price near it."""
    candles = np.empty((len(prices), window, len(FIELDS)), dtype=np.float32)
    candles[:, :, :4] = np.asarray(prices, dtype=np.float32)[:, None, None]
    candles[:, :, 4] = SMOKE_VOLUME
    return candles


def smoke_test(session: ort.InferenceSession, signature: Signature, meta: ModelMetadata | None, version: str) -> float:
    """Run the version on its recorded real window (or flat windows); LoadRefused unless every answer is a finite
    positive price (and the recorded one matches), and its quantiles, when it has them, are sound ranges around
    that price (and the recorded ones match). Returns the first forecast."""
    test = meta.smoke_test if meta else None  # the trainer's: a real window of candles and the forecast it gave
    recorded = recorded_quantiles = None
    if test is None:
        candles = flat_windows(signature.window)
    else:
        try:
            candles = np.asarray(test.candles, dtype=np.float32).reshape(1, signature.window, len(FIELDS))
            recorded = np.asarray(test.forecast, dtype=np.float32).reshape(1, signature.horizon)
            if test.quantiles is not None and signature.quantiles is not None:
                recorded_quantiles = np.asarray(test.quantiles, dtype=np.float32)[np.newaxis]
        except ValueError as exc:
            raise LoadRefused(f"metadata.json's smokeTest does not fit the graph ({exc})") from None
    prices = ", ".join(f"{p:g}" for p in SMOKE_PRICES)
    what = "its recorded smoke-test window" if recorded is not None else f"flat windows at prices {prices}"
    names = [spec.name for spec in signature.outputs]
    try:
        answer, *rest = session.run(names, {INPUT_NAME: candles})
    except Exception as exc:
        raise LoadRefused(f"version {version} failed a smoke inference: {str(exc).strip()[:300]}") from None
    if answer.shape != (len(candles), signature.horizon) or not np.isfinite(answer).all() or not (answer > 0).all():
        raise LoadRefused(
            f"version {version} answered {what} with {np.asarray(answer).ravel()[:8].tolist()} "
            f"(shape {list(answer.shape)}); expected {signature.horizon} finite positive prices per window"
        )
    if recorded is not None and not np.allclose(answer, recorded, rtol=SMOKE_RTOL):
        raise LoadRefused(
            f"version {version} answered its recorded smoke-test window with {answer.ravel().tolist()}, not the "
            f"{recorded.ravel().tolist()} recorded at training: the file is not the model that was measured"
        )
    if rest:
        problem = quantiles_problem(rest[0], answer, signature.levels, recorded_quantiles)
        if problem is not None:
            raise LoadRefused(f"version {version} answered {what} with {problem}")
    return float(answer[0, 0])


def quantiles_problem(
    quantiles: np.ndarray, forecast: np.ndarray, levels: tuple[float, ...], recorded: np.ndarray | None
) -> str | None:
    """What is wrong with a smoke answer's quantiles [n, h, levels] beside its forecast [n, h], or None. Sound
    ones are finite positive prices, ascending along levels (crossing quantiles are no range), the median
    being the forecast itself, and equal to the ones recorded at training when those are given."""
    expected = (*forecast.shape, len(levels))
    if quantiles.shape != expected:
        if quantiles.ndim == 3 and quantiles.shape[:2] == forecast.shape:
            return levels_mismatch(len(levels), quantiles.shape[2])
        return f"quantiles of shape {list(quantiles.shape)}, not {list(expected)}"
    if not np.isfinite(quantiles).all() or not (quantiles > 0).all():
        return f"quantiles {quantiles.ravel()[:8].tolist()}; expected finite positive prices"
    rows = quantiles.reshape(-1, len(levels))
    crossing = np.argwhere(np.diff(rows, axis=1) < 0)
    if len(crossing):
        row = rows[int(crossing[0][0])]
        return f"crossing quantiles {row.tolist()} for levels {list(levels)}; they must not decrease along levels"
    median = quantiles[..., median_index(levels)]
    if not np.allclose(median, forecast, rtol=MEDIAN_RTOL, atol=0.0):
        return f"a median quantile {median.ravel()[:8].tolist()}, not its forecast {forecast.ravel()[:8].tolist()}"
    if recorded is not None and (
        recorded.shape != quantiles.shape or not np.allclose(quantiles, recorded, rtol=SMOKE_RTOL)
    ):
        return (
            f"quantiles {quantiles.ravel().tolist()}, not the {recorded.ravel().tolist()} recorded at training: the "
            "file is not the model that was measured"
        )
    return None


@dataclass
class Served:
    """One loaded, checked version: what a request uses from start to end, even if a reload swaps it out."""

    version: str
    key: str
    session: ort.InferenceSession
    signature: Signature
    where: str
    interval: str | None
    loaded_at: str
    load_seconds: float
    created_at: datetime | None = None  # when the trainer made it (metadata.json); None without metadata
    kind: str | None = None  # lstm or baseline (metadata.json); None without metadata
    info: dict[str, Any] = field(default_factory=dict)

    def run(self, candles: np.ndarray, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The named outputs (default: every output the model has) for checked candles."""
        names = list(outputs) if outputs is not None else [spec.name for spec in self.signature.outputs]
        return dict(zip(names, cast(list[np.ndarray], self.session.run(names, {INPUT_NAME: candles})), strict=True))


def check_apart(artifact: Artifact, threads: int, limit_s: float) -> float:
    """Every check of `load_artifact`, run in a process of its own that is killed after `limit_s`: a graph whose
    inference never ends (a Loop of 9e18 iterations) or that crashes onnxruntime costs that process, not the
    server, and each version's check is apart from the others'. Returns the smoke forecast; LoadRefused
    otherwise. The process comes from a fork server started once, so a check costs no interpreter start."""
    version = artifact.candidate.version
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    receiver, sender = context.Pipe(duplex=False)
    cpu_s = math.ceil(limit_s * threads) + 1  # the kernel's bound too: a check outliving its server stops itself
    process = context.Process(target=_check_in_child, args=(artifact, threads, cpu_s, sender), daemon=True)
    with _CHECKS_LOCK:
        process.start()
        _CHECKS.add(process)
    sender.close()
    try:
        if not receiver.poll(limit_s):
            raise LoadRefused(
                f"the checks of version {version} did not end within {limit_s:g} s (--check-seconds): its smoke "
                "inference does not finish (raise --check-seconds if the model is only slow)"
            )
        passed, value = receiver.recv()
    except EOFError:
        process.join(5)
        if process.exitcode == -signal.SIGXCPU:
            raise LoadRefused(
                f"the checks of version {version} used more than {cpu_s} s of CPU time (--check-seconds "
                f"{limit_s:g} with {threads} thread(s)): its smoke inference does not finish"
            ) from None
        raise LoadRefused(
            f"the checks of version {version} ended without an answer (their process exited with {process.exitcode})"
        ) from None
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        receiver.close()
        with _CHECKS_LOCK:
            _CHECKS.discard(process)
    if not passed:
        raise LoadRefused(str(value))
    return float(value)


_CHECKS: set[BaseProcess] = set()
_CHECKS_LOCK = threading.Lock()


def stop_checks() -> None:
    """Kill the checks still running (the server is stopping: nobody waits for their answer)."""
    with _CHECKS_LOCK:
        for process in _CHECKS:
            if process.is_alive():
                process.kill()


def _check_in_child(artifact: Artifact, threads: int, cpu_s: int, sender: Connection) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    try:
        answer: tuple[bool, object] = (True, load_artifact(artifact, threads).info["smoke_forecast"])
    except LoadRefused as exc:
        answer = (False, str(exc))
    except Exception as exc:
        answer = (False, f"{type(exc).__name__}: {exc}")
    sender.send(answer)
    sender.close()


def load_artifact(artifact: Artifact, threads: int = 1, smoke: float | None = None) -> Served:
    """An onnxruntime session for the artifact, after every check; LoadRefused otherwise. With `smoke` (the
    forecast `check_apart` found), the smoke inference is not run again."""
    began = time.perf_counter()
    version = artifact.candidate.version
    try:
        proto = onnx.load_from_string(artifact.model)
        session = onnx_session(artifact.model, threads)
    except Exception as exc:  # onnx and onnxruntime raise their own types for a damaged file
        raise LoadRefused(f"version {version} is not a loadable ONNX model: {str(exc).strip()[:300]}") from None
    meta = artifact.metadata
    signature = graph_signature(session, meta.quantiles if meta else None)
    for key, value in (("window", signature.window), ("horizon", signature.horizon)):
        if meta is not None and getattr(meta, key) != value:
            raise LoadRefused(f"metadata.json says {key} {getattr(meta, key)} but the graph's {key} is {value}")
    if artifact.config is not None:
        try:
            problems = config_problems(read_config(artifact.config), proto, artifact.folder_name)
        except ConfigError as exc:
            problems = [str(exc)]
        if problems:
            raise LoadRefused(f"config.pbtxt of version {version} does not match the model: " + "; ".join(problems))
    if smoke is None:
        smoke = smoke_test(session, signature, meta, version)
    interval = meta.interval if meta else None
    created_at = rfc3339(meta.created_at) if meta else None
    if meta is not None and created_at is None:
        log.warning("metadata.json of version %s has createdAt %r, not an RFC 3339 time", version, meta.created_at)
    return Served(
        version=version,
        key=artifact.candidate.key,
        session=session,
        signature=signature,
        where=artifact.candidate.where,
        interval=str(interval) if interval else None,
        loaded_at=iso_z(),
        load_seconds=time.perf_counter() - began,
        created_at=created_at,
        kind=meta.kind if meta else None,
        info={"smoke_forecast": smoke},
    )
