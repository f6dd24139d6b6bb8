"""The environment variables read outside a command's settings, with what they mean: S3's standard names, the
Kubernetes login, the pair resource, the dashboard's secrets. Each command's settings (makeusrich.settings)
describe their own variables; a shared one listed here keeps this description.

A test checks that every variable the package names is described here or by some settings, in the README and in
some command's help.
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
KUBERNETES = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
# The dashboard's login secrets: variables only, never flags.
UI = ("MAKEUSRICH_UI_PASSWORD_HASH", "MAKEUSRICH_UI_PASSWORD", "MAKEUSRICH_UI_STORAGE_SECRET", "NICEGUI_STORAGE_PATH")

VARIABLES: dict[str, str] = {
    "MAKEUSRICH_PAIR": "the CurrencyPair resource (YAML or JSON) when -f is not given; set on trainer Jobs",
    "BINANCE_API_URL": "Binance REST base, up to /api (default https://api.binance.com/api)",
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
    "MAKEUSRICH_UI_PASSWORD_HASH": "scrypt hash from `makeusrich ui --hash-password`: enables the login that "
    "creates, edits and deletes pairs (read-only without)",
    "MAKEUSRICH_UI_PASSWORD": "a plain password instead of the hash (hashed at start; prefer the hash)",
    "MAKEUSRICH_UI_STORAGE_SECRET": "key that signs session cookies (random per start when unset: logins end "
    "with a restart)",
    "NICEGUI_STORAGE_PATH": "where per-browser dashboard settings are kept (default ./.nicegui)",
}


# Set by the Kubernetes client for an exec plugin it runs, never read.
WRITTEN = ("KUBERNETES_EXEC_INFO",)


def epilog(names: Iterable[str | tuple[str, str]], note: str = "") -> str:
    """The end of a command's --help: a note, then the variables it reads (for RawDescriptionHelpFormatter):
    names from the table above, or (name, meaning) pairs from a command's settings."""
    described = dict((item, VARIABLES[item]) if isinstance(item, str) else item for item in names)
    parts = [textwrap.fill(note, 100)] if note else []
    if described:
        width = max(len(name) for name in described)
        lines = [f"  {name.ljust(width)}  {text}" for name, text in described.items()]
        parts.append("environment:\n" + "\n".join(lines))
    return "\n\n".join(parts)
