"""`makeusrich operator` as a user starts it: help, and one clear sentence when it cannot run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.shell import ROOT, makeusrich


@pytest.mark.parametrize("command", ["render", "operator"])
def test_commands_have_help(command: str) -> None:
    result = makeusrich(command, "--help")
    assert result.returncode == 0 and "usage: makeusrich" in result.stdout


def test_operator_without_credentials_fails_with_one_sentence(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config either
    result = makeusrich("operator", "--liveness", "", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "makeusrich operator: cannot log in to Kubernetes: no credentials: run in a pod with a service account, "
        "or set KUBECONFIG"
    )


def test_operator_refuses_both_scopes() -> None:
    result = makeusrich("operator", "-A", "-n", "markets")
    assert result.returncode == 1 and "not both" in result.stderr


def test_render_checks_what_it_is_given(tmp_path: Path) -> None:
    example = (ROOT / "manifests" / "examples" / "btc-usdt.yaml").read_text()
    odd = tmp_path / "uid.yaml"
    odd.write_text(example.replace("name: btc-usdt", "name: btc-usdt\n  uid: 12345"))
    result = makeusrich("render", "-f", str(odd))
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "metadata.uid: Input should be a valid string" in result.stderr and "Traceback" not in result.stderr
    result = makeusrich(
        "render", "-f", str(ROOT / "manifests" / "examples" / "btc-usdt.yaml"), "--model-version", "latest"
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "makeusrich render: 'latest' is not a model version; versions are the UTC time of their run, like "
        "20261126T150000Z"
    )
