"""The Kubernetes API emulator (KMock with tests/fixtures/kube_emulator.py) in a process of its own, for
bench/operator_bench.py: the operator's numbers are then the operator's, and the emulator's CPU is measured apart.

It prints `url <URL>` once it serves, then answers commands read on stdin, one JSON line each:

    complete <prefix>           how many of the pairs named <prefix>... are complete: CronJob, first Job and a
                                status of generation 1 with the conditions a new pair has (Degraded and any
                                condition added later are not waited for)
    children <name>             whether the pair has its CronJob and first Job
    mark                        start counting the operator's requests again
    report                      the operator's requests since the mark (kopf's and its own, by User-Agent), by kind
    objects                     how many pairs, CronJobs and Jobs there are

The answers come from the emulator's own change events, kept as they happen, so a question costs no listing; and
the emulator keeps no log of past requests (kmock's log is rescanned on every read request, a cost that grows with
the run and that no real API server has): the benchmark's own bookkeeping stays out of the operator's way.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from collections.abc import Callable
from typing import Any

import _harness  # noqa: F401  (this checkout first on sys.path)
import aiohttp.web
import attrs
import kmock

from tests.fixtures.kube_emulator import CRONJOBS, JOBS, PAIRS, Emulator, register_resources

NAMESPACE = "default"
OPERATOR_AGENTS = ("kopf/", "makeusrich-operator/")
REQUIRED_CONDITIONS = {"Valid", "Trained", "Serving", "Ready"}
PAIRS_PLURAL, CRONJOBS_PLURAL, JOBS_PLURAL = (kmock.resource(r).plural for r in (PAIRS, CRONJOBS, JOBS))


def describe(request: kmock.Request) -> str:
    resource = request.resource.plural if request.resource is not None and request.resource.plural else "discovery"
    if request.subresource:
        resource += f"/{request.subresource}"
    verb = {"GET": "watch" if request.params.get("watch") == "true" else "get/list"}.get(
        request.method.value, request.method.value.lower()
    )
    return f"{verb} {resource}"


@attrs.define(kw_only=True)
class ObservedEmulator(Emulator):
    """The emulator telling `on_change` of every object it writes and `on_request` of every request, without
    keeping the requests."""

    on_change: Callable[[kmock.resource, str, dict[str, Any]], None] = lambda res, kind, obj: None
    on_request: Callable[[kmock.Request], None] = lambda request: None

    async def _emit(self, res: kmock.resource, kind: str, obj: dict[str, Any]) -> None:
        self.on_change(res, kind, obj)
        await super()._emit(res, kind, obj)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self.on_request(request)
        # kmock appended this request just before calling here, with no await between: keep only it, the one its
        # reaction filters look for (an identity check that walks the whole log).
        del self._requests[:-1]
        return await super()._handle(request)


class Progress:
    """The pairs' progress and the operator's requests, updated from the emulator's change events."""

    def __init__(self, kube: Emulator) -> None:
        self.kube = kube
        self.settled: set[str] = set()  # pairs whose status has every condition of a new pair, at generation 1
        self.with_cronjob: set[str] = set()
        self.with_first_job: set[str] = set()
        self.requests: collections.Counter[str] = collections.Counter()

    def on_change(self, res: kmock.resource, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name") or ""
        if meta.get("namespace") != NAMESPACE:
            return
        if res.plural == PAIRS_PLURAL:
            status = obj.get("status") or {}
            conditions = {c.get("type") for c in status.get("conditions") or () if isinstance(c, dict)}
            if kind != "DELETED" and status.get("observedGeneration") == 1 and conditions >= REQUIRED_CONDITIONS:
                self.settled.add(name)
            else:
                self.settled.discard(name)
        elif res.plural == CRONJOBS_PLURAL and name.endswith("-trainer"):
            pair = name.removesuffix("-trainer")
            if kind == "DELETED":
                self.with_cronjob.discard(pair)
            else:
                self.with_cronjob.add(pair)
        elif res.plural == JOBS_PLURAL:
            pair, initial, _ = name.partition("-trainer-initial-")
            if initial:
                self.with_first_job.add(pair)  # a first Job once seen counts, as a Job that ran and was removed

    def on_request(self, request: kmock.Request) -> None:
        if request.headers.get("User-Agent", "").startswith(OPERATOR_AGENTS):
            self.requests[describe(request)] += 1

    def has_children(self, name: str) -> bool:
        return name in self.with_cronjob and name in self.with_first_job

    def answer(self, line: str) -> Any:
        word, *rest = line.split()
        if word == "complete":
            prefix = rest[0]
            done = self.settled & self.with_cronjob & self.with_first_job
            return {"done": sum(1 for name in done if name.startswith(prefix))}
        if word == "children":
            return {"children": self.has_children(rest[0])}
        if word == "mark":
            self.requests.clear()
            return {}
        if word == "report":
            return {"requests": sum(self.requests.values()), "byKind": dict(self.requests)}
        if word == "objects":
            return {
                "pairs": len(self.kube.names(PAIRS)),
                "cronjobs": len(self.kube.names(CRONJOBS)),
                "jobs": len(self.kube.names(JOBS)),
            }
        raise ValueError(f"unknown command {line!r}")


async def main() -> None:
    async with ObservedEmulator() as kube, kmock.Server(kube):
        register_resources(kube)
        progress = Progress(kube)
        kube.on_change, kube.on_request = progress.on_change, progress.on_request
        print(f"url {str(kube.url).rstrip('/')}", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            print(json.dumps(progress.answer(line.strip())), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
