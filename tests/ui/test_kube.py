"""The Kubernetes side of the dashboard against KMock's API emulator over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from makeusrich.errors import KubeError, PairError
from makeusrich.kube import KubeClient, credentials_from_kubeconfig
from makeusrich.operator.status import model_status
from makeusrich.pair import pair_document
from makeusrich.pair_sources import KubeSource
from makeusrich.ui.badges import badges
from makeusrich.ui.format import format_ratio
from tests.fixtures.kube_emulator import ISVCS, PAIRS, Emulator, write_kubeconfig
from tests.fixtures.model_server import RunningServer
from tests.fixtures.models import small_pair
from tests.ui.conftest import Open, running_dashboard
from tests.ui.test_pages import FAST_LOGIN, card, login

NOW = "2026-01-01T00:00:00Z"


def source_for(kube: Emulator, tmp_path: Path, namespace: str | None = None) -> KubeSource:
    config = write_kubeconfig(tmp_path / "kubeconfig", str(kube.url).rstrip("/"))
    return KubeSource(KubeClient(lambda: credentials_from_kubeconfig(config)), namespace)


async def create(kube: Emulator, namespace: str, body: dict[str, Any]) -> None:
    async with kube.post(f"/apis/makeusrich.io/v1alpha1/namespaces/{namespace}/currencypairs", json=body) as answer:
        assert answer.status == 201, await answer.text()


async def create_isvc(kube: Emulator, namespace: str, name: str, url: str) -> None:
    body = {"metadata": {"name": name, "labels": {"makeusrich.io/pair": name}}, "spec": {}}
    async with kube.post(f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices", json=body) as r:
        assert r.status == 201, await r.text()
    await kube.set_status(
        ISVCS,
        namespace,
        name,
        {"address": {"url": url}, "conditions": [{"type": "Ready", "status": "True"}]},
    )


async def test_kube_source_reads_pairs_status_and_predictor_urls(kube: Emulator, tmp_path: Path) -> None:
    source = source_for(kube, tmp_path)
    await create(kube, "default", pair_document(small_pair("btc-usdt")))
    await create(kube, "team", pair_document(small_pair("eth-usdt", namespace="team", currency="eth")))
    broken = pair_document(small_pair("bad"))
    broken["spec"]["model"]["window"] = 3  # the API server would refuse it; an old CRD might not
    await create(kube, "team", broken)
    await kube.set_status(PAIRS, "default", "btc-usdt", {"serving": {"url": "http://from-status"}})
    await create_isvc(kube, "team", "eth-usdt", "http://eth-usdt-predictor.team.svc.cluster.local")
    try:
        records = {r.key: r for r in await source.list_pairs()}
        assert sorted(records) == ["default/btc-usdt", "team/bad", "team/eth-usdt"]
        pair = records["default/btc-usdt"].pair
        assert pair is not None and pair.spec == small_pair("btc-usdt").spec and pair.name == "btc-usdt"
        assert records["default/btc-usdt"].serving_url == "http://from-status"
        assert records["team/eth-usdt"].serving_url == "http://eth-usdt-predictor.team.svc.cluster.local"
        assert records["team/bad"].pair is None and "spec.model.window" in str(records["team/bad"].problem)
        only_team = source_for(kube, tmp_path, "team")
        assert sorted(r.key for r in await only_team.list_pairs()) == ["team/bad", "team/eth-usdt"]
        await only_team.aclose()
    finally:
        await source.aclose()


async def test_kube_source_creates_patches_and_deletes(kube: Emulator, tmp_path: Path) -> None:
    source = source_for(kube, tmp_path)
    try:
        pinned = small_pair("btc-usdt", serving={"pinnedVersion": "20260101T000000Z"})
        await source.save(pinned, create=True)
        stored = kube.get(PAIRS, "default", "btc-usdt")
        assert stored is not None and stored["spec"]["serving"]["pinnedVersion"] == "20260101T000000Z"
        with pytest.raises(PairError, match="already exists"):
            await source.save(pinned, create=True)
        (record,) = await source.list_pairs()
        await source.save(small_pair("btc-usdt", suspend=True), create=False, previous=record)
        stored = kube.get(PAIRS, "default", "btc-usdt")
        assert stored is not None and stored["spec"]["suspend"] is True
        assert "pinnedVersion" not in stored["spec"]["serving"]  # unpinning removes the field
        assert stored["metadata"]["generation"] == 2
        patches = [r for r in kube.requests if r.method.value == "PATCH"]
        assert patches[-1].headers["Content-Type"] == "application/merge-patch+json"
        assert patches[-1].data["metadata"] == {"resourceVersion": record.resource_version}
        kube.fail("PATCH", r"/currencypairs/btc-usdt$", status=409)
        with pytest.raises(PairError, match="changed by someone else"):
            await source.save(small_pair("btc-usdt"), create=False, previous=record)
        await source.delete(record)
        assert kube.get(PAIRS, "default", "btc-usdt") is None
        kube.fail("GET", r"/currencypairs$", status=403)
        with pytest.raises(KubeError, match="403"):
            await source.list_pairs()
    finally:
        await source.aclose()


async def test_dashboard_over_kubernetes_isolates_a_down_predictor(
    dashboard: Open, kube: Emulator, tmp_path: Path, model_server: RunningServer
) -> None:
    store = model_server.store
    assert store is not None
    meta = store.outcome.metadata
    await create(kube, "default", pair_document(store.pair))
    await create(kube, "team", pair_document(small_pair("btc-usdt", namespace="team")))
    await create(kube, "default", pair_document(small_pair("fresh")))  # just created: no model, no predictor
    status = {
        "model": model_status(store.version, str(meta.storage_uri), meta).model_dump(by_alias=True),
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok", "lastTransitionTime": NOW},
        ],
        "lastTraining": {"job": "btc-usdt-trainer-1", "phase": "Succeeded", "startedAt": NOW, "finishedAt": NOW},
    }
    await kube.set_status(PAIRS, "default", "btc-usdt", status)
    await create_isvc(kube, "default", "btc-usdt", model_server.url)
    await create_isvc(kube, "team", "btc-usdt", "http://127.0.0.1:9")
    source = source_for(kube, tmp_path)
    async with dashboard(pair_source=source, auth=FAST_LOGIN) as user:  # no --store: skill comes from the status
        await user.open("/")
        await user.should_see("Serving down", retries=60)
        await user.should_see("Ready", retries=60)
        good = card(user, "default/btc-usdt")
        assert "⚠ the model server at http://127.0.0.1:9 is unreachable" in card(user, "team/btc-usdt")
        assert "22,029.16" in good
        said = model_status(store.version, str(meta.storage_uri), meta).after_fees  # the status's answer after fees
        assert said is not None and said.startswith("After fees, test split (") and said in good
        states = running_dashboard().states
        assert states["default/btc-usdt"].served_version == store.version
        assert states["default/btc-usdt"].forecast and not states["default/btc-usdt"].errors
        skill = states["default/btc-usdt"].skill
        assert skill is not None and skill.test is not None
        assert skill.test.rel_mae == meta.metrics.test.model.rel_mae
        assert format_ratio(skill.test.rel_mae) in good
        team = states["team/btc-usdt"]
        assert team.serving_error is not None and "127.0.0.1:9" in team.serving_error
        assert team.last_close == pytest.approx(22029.16)  # candles still shown for the broken one
        fresh = states["default/fresh"]
        assert fresh.serving_error is None and [b.text for b in badges(fresh)] == ["No model"]
        await user.open("/pair/default/btc-usdt")
        await user.should_see("Job btc-usdt-trainer-1", retries=60)
        await user.should_see("No backtest: the backtest needs the model store", retries=60)

        await login(user)
        await user.open("/new")
        await user.should_see(marker="save", retries=40)
        user.find(marker="field-metadata.name").type("eth-usdt")
        user.find(marker="field-spec.currency").type("eth")
        user.find(marker="field-spec.compare").type("usdt")
        user.find(marker="save").click()
        await user.should_see("ETH/USDT", retries=60)
        created = kube.get(PAIRS, "default", "eth-usdt")
        assert created is not None and created["spec"]["currency"] == "eth"
