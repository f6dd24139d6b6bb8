"""KMock's Kubernetes emulator with the small fixes kopf and this operator need (FACTS.md, "kopf and KMock").

kmock 0.8 stores objects as posted and merges every PATCH into them. A real API server also:
- fills apiVersion, kind and namespace, and stamps uid, resourceVersion, generation and creationTimestamp
  (kopf waits for the resourceVersion of its own patches to come back through the watch);
- names objects posted with generateName (kopf's Events);
- applies JSON patches (answering 422 when a `test` op fails) as well as merge patches;
- keeps `status` and the rest apart when a resource has a status subresource, bumps generation on spec changes
  and ignores a patch that changes nothing;
- honours labelSelector on list and watch.
This subclass does those, looks objects up by key instead of scanning all of them (the 1,000-pair benchmark),
and can inject faults (an error answer before anything is applied) and drop every open watch.

What it still cannot show (schemas, admission, RBAC, garbage collection, controllers) is covered elsewhere: schema
checks of the rendered objects, ownerReference assertions, and tests that drive Job and InferenceService status
by hand.
"""

from __future__ import annotations

import copy
import datetime
import random
import re
import string
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml

CREATE, UPDATE, DELETE = kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE
DROP = {"type": "_DROP"}


@dataclass
class Fault:
    """Answer `times` requests that match with `status` (and change nothing)."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int
    reason: str = "InjectedFault"
    retry_after: str | None = None


def selector_matches(selector: str | None, labels: Mapping[str, str] | None) -> bool:
    """Equality-based label selectors (k=v, k!=v, k, !k), enough for kopf and the operator."""
    if not selector:
        return True
    labels = labels or {}
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term and term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    return aiohttp.web.json_response(body, status=code)


class ApiFailure(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    faults: list[Fault] = attrs.field(factory=list)
    _rv: int = 0

    @property
    def requests(self) -> list[kmock.Request]:
        """Every request served so far, in order."""
        return list(self._requests)

    # --- test controls ---------------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path: str,
        status: int = 500,
        times: int = 1,
        retry_after: str | None = None,
    ) -> Fault:
        fault = Fault(method.upper(), re.compile(path), status, times, retry_after=retry_after)
        self.faults.append(fault)
        return fault

    async def drop_watches(self) -> None:
        """End every open watch stream, as a restarted API server or a broken connection would."""
        for bus in list(self._buses.values()):
            await bus.put(DROP)

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:  # type: ignore[override]
        """The stored object, or None (soft-deleted counts as absent)."""
        key = (kmock.resource(resource), namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def names(self, resource: str, namespace: str | None = None) -> list[str]:
        res = kmock.resource(resource)
        return sorted(
            name
            for (r, ns, name), obj in self._objects.items()
            if r == res and (namespace is None or ns == namespace) and not obj.deleted
        )

    async def set_status(self, resource: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """What a controller (Job, KServe) would write: a status-subresource merge patch through the API."""
        async with self.patch(
            f"{self._path(kmock.resource(resource), namespace, name)}/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            assert response.status == 200, await response.text()

    @staticmethod
    def _path(res: kmock.resource, namespace: str, name: str = "") -> str:
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        return f"{base}/namespaces/{namespace}/{res.plural}" + (f"/{name}" if name else "")

    # --- request handling -----------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _take_fault(self, request: kmock.Request) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == str(request.method.value) and fault.path.search(request.url.path):
                fault.times -= 1
                return fault
        return None

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        fault = self._take_fault(request)
        if fault is not None:
            response = _status(fault.status, fault.reason, f"injected {fault.status} for {request.url.path}")
            if fault.retry_after:
                response.headers["Retry-After"] = fault.retry_after
            return response
        if request.resource is not None and request.action in (CREATE, UPDATE, DELETE):
            try:
                async with self._lock:
                    return await self._write(request)
            except ApiFailure as exc:
                return _status(exc.code, exc.reason, exc.message)
        return await super()._handle(request)

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo:
        if res not in self.resources:
            raise ApiFailure(404, "NotFound", f"the server could not find the requested resource {res.plural}")
        return self.resources[res]

    async def _emit(self, res: kmock.resource, kind: str, obj: dict[str, Any]) -> None:
        await self._buses[res].put({"type": kind, "object": copy.deepcopy(obj)})

    async def _write(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        assert res is not None
        info = self._info(res)
        if request.action == CREATE:
            return await self._create(request, res, info)
        key = (res, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise ApiFailure(404, "NotFound", f'{res.plural} "{request.name}" not found')
        if request.action == DELETE:
            return await self._delete(res, key)
        return await self._patch(request, res, info, key)

    async def _create(
        self, request: kmock.Request, res: kmock.resource, info: kmock.ResourceInfo
    ) -> aiohttp.web.StreamResponse:
        if not isinstance(request.data, dict):
            raise ApiFailure(400, "BadRequest", "the body is not a JSON object")
        body = copy.deepcopy(request.data)
        meta = body.setdefault("metadata", {})
        namespace = request.namespace or meta.get("namespace")
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        if not name:
            raise ApiFailure(422, "Invalid", "metadata.name or metadata.generateName is required")
        key = (res, namespace if info.namespaced is not False else None, name)
        if key in self._objects and not self._objects[key].deleted:
            raise ApiFailure(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
        body["apiVersion"] = f"{res.group}/{res.version}" if res.group else res.version
        body["kind"] = info.kind or body.get("kind")
        meta["name"] = name
        if namespace is not None and info.namespaced is not False:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._next_rv()
        meta["generation"] = 1
        meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if "status" in info.subresources:
            body.pop("status", None)  # set only through /status, as on a real server
        if key in self._objects:
            self._objects[key].create(body)
        else:
            self._objects[key] = body
        await self._emit(res, "ADDED", body)
        return aiohttp.web.json_response(body, status=201)

    async def _patch(
        self,
        request: kmock.Request,
        res: kmock.resource,
        info: kmock.ResourceInfo,
        key: tuple[Any, ...],
    ) -> aiohttp.web.StreamResponse:
        old = copy.deepcopy(self._objects[key].raw)
        content_type = request.headers.get("Content-Type", "")
        if "json-patch" in content_type:
            try:
                new = jsonpatch.apply_patch(old, request.data)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise ApiFailure(422, "Invalid", f"the test operation failed: {exc}") from None
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise ApiFailure(422, "Invalid", str(exc)) from None
        elif isinstance(request.data, dict):
            new = merge_patch(old, request.data)
        else:
            raise ApiFailure(400, "BadRequest", "a merge patch must be a JSON object")
        if request.subresource == "status":
            new = {**old, "status": new.get("status")} if new.get("status") is not None else dict(old)
            if new.get("status") is None:
                new.pop("status", None)
        elif "status" in info.subresources:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        for field in ("uid", "name", "namespace", "creationTimestamp", "generation", "resourceVersion"):
            if field in old["metadata"]:
                new.setdefault("metadata", {})[field] = old["metadata"][field]
        if new == old:
            return aiohttp.web.json_response(old)  # a no-op patch changes nothing, not even resourceVersion
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[key].delete()
            await self._emit(res, "DELETED", new)
            return aiohttp.web.json_response(new)
        self._objects[key].history.append(new)
        await self._emit(res, "MODIFIED", new)
        return aiohttp.web.json_response(new)

    async def _delete(self, res: kmock.resource, key: tuple[Any, ...]) -> aiohttp.web.StreamResponse:
        obj = copy.deepcopy(self._objects[key].raw)
        meta = obj["metadata"]
        meta["resourceVersion"] = self._next_rv()
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                self._objects[key].history.append(obj)
                await self._emit(res, "MODIFIED", obj)
            return aiohttp.web.json_response(obj)
        self._objects[key].delete()
        await self._emit(res, "DELETED", obj)
        return aiohttp.web.json_response(obj)

    # --- reads ------------------------------------------------------------------------------------------------

    def _items(self, request: kmock.Request) -> list[dict[str, Any]]:
        selector = request.params.get("labelSelector")
        return [
            obj.raw
            for (res, ns, _), obj in self._objects.items()
            if res == request.resource
            and (request.namespace is None or ns == request.namespace)
            and not obj.deleted
            and selector_matches(selector, (obj.raw.get("metadata") or {}).get("labels"))
        ]

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        info = self._info(request.resource)
        return {
            "apiVersion": "v1",
            "kind": f"{info.kind or 'Object'}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": self._items(request),
        }

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return self._objects[key].raw

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        """The current objects as ADDED, then every change. The bus is marked before the listing (under the write
        lock), so nothing written in between is lost; kmock's own watch marks it after."""
        assert request.resource is not None
        yield b""  # send the headers now: the client waits for them
        bus = self._buses[request.resource]
        selector = request.params.get("labelSelector")
        async with self._lock:
            marker = await bus.mark()
            events = [{"type": "ADDED", "object": copy.deepcopy(obj)} for obj in self._items(request)]
        try:
            for event in events:
                yield event
            async for event in bus.stream(since=marker):
                if event == DROP:
                    return
                meta = (event.get("object") or {}).get("metadata") or {}
                if request.namespace is not None and meta.get("namespace") != request.namespace:
                    continue
                if request.name is not None and meta.get("name") != request.name:
                    continue
                if selector_matches(selector, meta.get("labels")):
                    yield event
        finally:
            await bus.unmark(marker)


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig that logs in to the emulator at `server` with a dummy token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config))
    return path
