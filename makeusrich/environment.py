"""Every environment variable a command reads, with what it means: one table for `--help` and the README.

A test checks that every variable the package names is listed here, in the README and in some command's help.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

S3 = (
    "S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "S3_USE_HTTPS",
    "S3_VERIFY_TLS",
    "S3_CREATE_BUCKET",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "SSL_CERT_FILE",
)
BINANCE = ("BINANCE_API_URL", "MAKEUSRICH_BINANCE_RETRIES")
KUBERNETES = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
OPERATOR = (
    "MAKEUSRICH_STORE",
    "MAKEUSRICH_IMAGE",
    "MAKEUSRICH_IMAGE_PULL_POLICY",
    "MAKEUSRICH_S3_SECRET",
    "S3_ENDPOINT",
    "MAKEUSRICH_STORAGE_SERVICE_ACCOUNT",
)
UI = (
    "MAKEUSRICH_UI_SECURE_COOKIES",
    "MAKEUSRICH_UI_TRUSTED_PROXIES",
    "MAKEUSRICH_UI_PASSWORD_HASH",
    "MAKEUSRICH_UI_PASSWORD",
    "MAKEUSRICH_UI_STORAGE_SECRET",
    "MAKEUSRICH_UI_LOG_LEVEL",
    "NICEGUI_STORAGE_PATH",
)

VARIABLES: dict[str, str] = {
    "MAKEUSRICH_STORE": "model store when --store is not given: a folder or s3://bucket[/prefix] "
    "(default .makeusrich/store)",
    "MAKEUSRICH_PAIR": "the CurrencyPair resource (YAML or JSON) when -f is not given; set on trainer Jobs",
    "MAKEUSRICH_PAIRS_DIR": "folder of pair files the dashboard shows (default ./pairs)",
    "MAKEUSRICH_SERVING_URL": "v2 model server base URL (default http://127.0.0.1:8080)",
    "BINANCE_API_URL": "Binance REST base, up to /api (default https://api.binance.com/api)",
    "MAKEUSRICH_BINANCE_RETRIES": "retries per Binance request on rate limits, server errors and timeouts "
    "(default 5; the dashboard 2); an unreachable host is retried once",
    "S3_ENDPOINT": "S3 endpoint: http://host:port, https://host or host[:port] (default s3.amazonaws.com)",
    "AWS_ENDPOINT_URL": "S3 endpoint when S3_ENDPOINT is unset",
    "S3_USE_HTTPS": "0 or 1: TLS for an endpoint written without a scheme (default 1)",
    "S3_VERIFY_TLS": "0 skips certificate checks (a self-signed MinIO); default 1",
    "S3_CREATE_BUCKET": "0 refuses to create a missing bucket; default 1",
    "AWS_ACCESS_KEY_ID": "S3 access key (with AWS_SECRET_ACCESS_KEY; neither for anonymous access)",
    "AWS_SECRET_ACCESS_KEY": "S3 secret key",
    "AWS_SESSION_TOKEN": "S3 session token, for temporary credentials",
    "AWS_REGION": "S3 region (optional)",
    "AWS_DEFAULT_REGION": "S3 region when AWS_REGION is unset",
    "SSL_CERT_FILE": "CA bundle for TLS to S3 (default: certifi's)",
    "KUBECONFIG": "kubeconfig file (default: in-cluster service account, then ~/.kube/config)",
    "KUBERNETES_SERVICE_HOST": "set by Kubernetes in a pod: log in with the pod's service account",
    "KUBERNETES_SERVICE_PORT": "set by Kubernetes in a pod, with KUBERNETES_SERVICE_HOST",
    "MAKEUSRICH_IMAGE": "trainer image the operator gives CronJobs and Jobs",
    "MAKEUSRICH_IMAGE_PULL_POLICY": "trainer image pull policy (default IfNotPresent)",
    "MAKEUSRICH_S3_SECRET": "Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for trainer pods",
    "MAKEUSRICH_STORAGE_SERVICE_ACCOUNT": "predictor ServiceAccount listing the S3 Secret for KServe "
    "('' for the namespace's default)",
    "MAKEUSRICH_UI_PASSWORD_HASH": "scrypt hash from `makeusrich ui --hash-password`: enables the login that "
    "creates, edits and deletes pairs (read-only without)",
    "MAKEUSRICH_UI_PASSWORD": "a plain password instead of the hash (hashed at start; prefer the hash)",
    "MAKEUSRICH_UI_STORAGE_SECRET": "key that signs session cookies (random per start when unset: logins end "
    "with a restart)",
    "MAKEUSRICH_UI_LOG_LEVEL": "log level of the dashboard's web server (default warning)",
    "MAKEUSRICH_UI_SECURE_COOKIES": "1 marks session cookies Secure even when no proxy says the request came over "
    "TLS",
    "MAKEUSRICH_UI_TRUSTED_PROXIES": "addresses whose X-Forwarded-For and X-Forwarded-Proto the dashboard believes "
    "(default 127.0.0.1)",
    "NICEGUI_STORAGE_PATH": "where per-browser dashboard settings are kept (default ./.nicegui)",
}


def epilog(names: Iterable[str], note: str = "") -> str:
    """The end of a command's --help: a note, then the variables it reads (for RawDescriptionHelpFormatter)."""
    chosen = list(dict.fromkeys(names))
    parts = [textwrap.fill(note, 100)] if note else []
    if chosen:
        width = max(len(name) for name in chosen)
        lines = [f"  {name.ljust(width)}  {VARIABLES[name]}" for name in chosen]
        parts.append("environment:\n" + "\n".join(lines))
    return "\n\n".join(parts)
