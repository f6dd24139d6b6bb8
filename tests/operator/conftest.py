"""Fixtures for operator tests: the real operator (kopf) running against the Kubernetes API emulator (the `kube`
and `kubeconfig` fixtures of tests/fixtures/kube_emulator.py), and the RBAC audit of what it asked for.

The operator runs in a thread with its own event loop, exactly as `makeusrich operator` runs it (kopf.run), and
talks to the emulator over HTTP on loopback after logging in through a kubeconfig file. Running kopf in the
test's own loop is not an option: at exit it cancels every task created after it started, pytest's included.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import pytest_asyncio
import yaml

from makeusrich.operator.handlers import Runtime, build_registry
from makeusrich.operator.settings import OperatorSettings
from makeusrich.store.s3 import S3Store
from tests.fixtures.kube_emulator import Emulator
from tests.fixtures.s3server import S3Server
from tests.fixtures.waiting import eventually

# --- RBAC: every request the operator makes must be allowed by manifests/rbac.yaml --------------------------------

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac.yaml"
VERBS = {
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.FETCH: "get",
    kmock.action.CREATE: "create",
    kmock.action.UPDATE: "patch",
    kmock.action.DELETE: "delete",
}


def rbac_rules() -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc and doc["kind"] in ("ClusterRole", "Role")]
    return [rule for doc in docs for rule in doc["rules"]]


def permission(request: kmock.Request) -> tuple[str, str, str] | None:
    """(apiGroup, resource[/subresource], verb) as RBAC sees a request; None for discovery (always allowed)."""
    if request.resource is None or request.resource.plural is None or request.action is None:
        return None
    verb = "update" if request.method.value == "PUT" else VERBS[request.action]
    plural = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
    return (request.resource.group or "", plural, verb)


def denied_requests(emulator: Emulator, rules: list[dict[str, Any]] | None = None) -> list[str]:
    """Requests by the operator (kopf's and our client's) that the ClusterRoles do not allow."""
    rules = rbac_rules() if rules is None else rules
    denied = []
    for request in emulator.requests:
        agent = request.headers.get("User-Agent", "")
        if not agent.startswith(("kopf/", "makeusrich-operator/")):
            continue
        needed = permission(request)
        if needed is None:
            continue
        group, resource, verb = needed
        if not any(
            group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"] for rule in rules
        ):
            denied.append(f"{request.method.value} {request.url.path_qs}")
    return denied


@dataclass
class RunningOperator:
    """An operator started by `start_operator`; `stop()` ends it and re-raises what it raised."""

    settings: OperatorSettings
    runtime: Runtime
    thread: threading.Thread
    stop_flag: threading.Event
    errors: list[BaseException] = field(default_factory=list)

    async def whole_periodic_round(self, timeout: float = 15.0) -> None:
        """Wait until a periodic reconcile that started after this call has finished (rounds are counted at their
        end, so two more ends mean one whole round ran after now): the event a test of "nothing happens" waits
        for, instead of a fixed sleep."""
        reconciler = self.runtime.reconciler
        target = reconciler.rounds + 2
        await eventually(
            lambda: reconciler.rounds >= target, what="one whole periodic reconcile round", timeout=timeout
        )

    async def stop(self) -> None:
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, 30)
        assert not self.thread.is_alive(), "the operator did not stop within 30 s"
        if self.errors:
            raise self.errors[0]


async def start_operator(settings: OperatorSettings, ready_timeout: float = 20.0) -> RunningOperator:
    """Run the operator as `makeusrich operator -A` would, in a thread; returns once kopf reports ready."""
    runtime = Runtime(settings)
    registry = build_registry(settings, runtime)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            kopf.run(
                registry=registry,
                settings=kopf.OperatorSettings(),
                standalone=True,
                clusterwide=not settings.namespaces,
                namespaces=settings.namespaces,
                stop_flag=stop,
                ready_flag=ready,
            )
        except BaseException as exc:  # surfaced by stop()
            errors.append(exc)

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    if not await asyncio.to_thread(ready.wait, ready_timeout):
        stop.set()
        raise RuntimeError(f"the operator was not ready within {ready_timeout} s: {errors}")
    return RunningOperator(settings, runtime, thread, stop, errors)


@pytest.fixture
def operator_settings(s3_env: S3Server, s3_store: S3Store) -> OperatorSettings:
    """A fresh bucket of the session's SeaweedFS, and a 1 s periodic reconcile so level-based repair is seen."""
    return OperatorSettings(
        image="example.org/makeusrich/trainer:test",
        store_url=f"s3://{s3_store.bucket}",
        s3_endpoint=s3_env.endpoint,
        reconcile_interval_s=1.0,
    )


@pytest_asyncio.fixture
async def operator(
    kube: Emulator, kubeconfig: Path, operator_settings: OperatorSettings
) -> AsyncIterator[RunningOperator]:
    """The operator, running for one test; afterwards, every request it made must be allowed by the RBAC."""
    running = await start_operator(operator_settings)
    try:
        yield running
    finally:
        await running.stop()
    assert denied_requests(kube) == [], "manifests/rbac.yaml does not allow what the operator did"
