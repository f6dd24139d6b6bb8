"""The Kubernetes API emulator (KMock with tests/fixtures/kube_emulator.py) in a process of its own, for
bench/operator_bench.py: the operator's numbers are then the operator's, and the emulator's CPU is measured apart.

It prints `url <URL>` once it serves, then answers commands read on stdin, one JSON line each:

    complete <prefix> <count>   how many of the pairs <prefix>0000... are complete: CronJob, first Job and a
                                status of generation 1 with the conditions a new pair has (Degraded and any
                                condition added later are not waited for)
    children <name>             whether the pair has its CronJob and first Job
    mark                        remember where the request log is
    report                      the operator's requests since the mark (kopf's and its own, by User-Agent), by kind
    objects                     how many pairs, CronJobs and Jobs there are
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from typing import Any

import _harness  # noqa: F401  (this checkout first on sys.path)
import kmock

from tests.fixtures.kube_emulator import CRONJOBS, JOBS, PAIRS, Emulator, register_resources

NAMESPACE = "default"
OPERATOR_AGENTS = ("kopf/", "makeusrich-operator/")
REQUIRED_CONDITIONS = {"Valid", "Trained", "Serving", "Ready"}


def describe(request: kmock.Request) -> str:
    resource = request.resource.plural if request.resource is not None and request.resource.plural else "discovery"
    if request.subresource:
        resource += f"/{request.subresource}"
    verb = {"GET": "watch" if request.params.get("watch") == "true" else "get/list"}.get(
        request.method.value, request.method.value.lower()
    )
    return f"{verb} {resource}"


class Commands:
    def __init__(self, kube: Emulator) -> None:
        self.kube = kube
        self.mark = 0
        self.pending: dict[str, set[str]] = {}  # prefix -> names not complete yet
        self.first_jobs: set[str] = set()

    def has_children(self, name: str) -> bool:
        if self.kube.peek(CRONJOBS, NAMESPACE, f"{name}-trainer") is None:
            return False
        if name not in self.first_jobs:
            prefix = f"{name}-trainer-initial-"
            if any(job.startswith(prefix) for job in self.kube.names(JOBS, NAMESPACE)):
                self.first_jobs.add(name)
        return name in self.first_jobs

    def complete(self, name: str) -> bool:
        pair = self.kube.peek(PAIRS, NAMESPACE, name) or {}
        status = pair.get("status") or {}
        conditions = {c.get("type") for c in status.get("conditions") or () if isinstance(c, dict)}
        return status.get("observedGeneration") == 1 and conditions >= REQUIRED_CONDITIONS and self.has_children(name)

    def first_jobs_now(self) -> None:
        """Every pair with a first Job, from one listing (a listing per pair costs too much at 10,000)."""
        for job in self.kube.names(JOBS, NAMESPACE):
            head, _, _ = job.partition("-trainer-initial-")
            if head != job:
                self.first_jobs.add(head)

    def answer(self, line: str) -> Any:
        word, *rest = line.split()
        if word == "complete":
            prefix, count = rest[0], int(rest[1])
            if prefix not in self.pending:
                self.pending[prefix] = {f"{prefix}{i:05d}" for i in range(count)}
            self.first_jobs_now()
            pending = {name for name in self.pending[prefix] if not self.complete(name)}
            self.pending[prefix] = pending
            return {"done": count - len(pending)}
        if word == "children":
            return {"children": self.has_children(rest[0])}
        if word == "mark":
            self.mark = len(self.kube.requests)
            return {"mark": self.mark}
        if word == "report":
            requests = [
                r
                for r in self.kube.requests[self.mark :]
                if r.headers.get("User-Agent", "").startswith(OPERATOR_AGENTS)
            ]
            return {"requests": len(requests), "byKind": collections.Counter(describe(r) for r in requests)}
        if word == "objects":
            return {
                "pairs": len(self.kube.names(PAIRS)),
                "cronjobs": len(self.kube.names(CRONJOBS)),
                "jobs": len(self.kube.names(JOBS)),
            }
        raise ValueError(f"unknown command {line!r}")


async def main() -> None:
    async with Emulator() as kube, kmock.Server(kube):
        register_resources(kube)
        print(f"url {str(kube.url).rstrip('/')}", flush=True)
        commands = Commands(kube)
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            print(json.dumps(commands.answer(line.strip())), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
