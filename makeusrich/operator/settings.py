"""What one installation of the operator decides: the chart's values arrive as flags or variables."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator
from pydantic.config import JsonDict
from pydantic_settings import NoDecode, SettingsConfigDict

from makeusrich import __version__
from makeusrich.settings import CommandSettings
from makeusrich.store import STORE_ENV

_VARIABLE_ONLY: JsonDict = {"flag": None}  # a variable, no flag


class OperatorSettings(CommandSettings):
    """Image, store, Secret names, resources and history limits of what the operator makes."""

    # An empty MAKEUSRICH_STORAGE_SERVICE_ACCOUNT means "the namespace's default account", so empties count.
    model_config = SettingsConfigDict(env_prefix="MAKEUSRICH_OPERATOR_", env_ignore_empty=False)

    image: str = Field(
        f"ghcr.io/makeusrich/trainer:{__version__}",
        min_length=1,
        validation_alias="MAKEUSRICH_IMAGE",
        description="trainer image of CronJobs and Jobs",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", validation_alias="MAKEUSRICH_IMAGE_PULL_POLICY", description="trainer image pull policy"
    )
    store_url: str = Field(
        "s3://makeusrich",
        validation_alias=STORE_ENV,
        description="model store URL, s3://bucket[/prefix]",
        json_schema_extra={"flag": "--store"},
    )
    s3_secret: str = Field(
        "makeusrich-s3",
        validation_alias="MAKEUSRICH_S3_SECRET",
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for trainer pods",
    )
    s3_endpoint: str | None = Field(
        None, validation_alias="S3_ENDPOINT", description="S3_ENDPOINT given to trainer pods (default: AWS)"
    )
    # How trainer pods reach S3 besides its endpoint, as the operator itself was told (the chart's s3.* values).
    s3_use_https: str | None = Field(None, validation_alias="S3_USE_HTTPS", json_schema_extra=_VARIABLE_ONLY)
    s3_verify_tls: str | None = Field(None, validation_alias="S3_VERIFY_TLS", json_schema_extra=_VARIABLE_ONLY)
    aws_region: str | None = Field(None, validation_alias="AWS_REGION", json_schema_extra=_VARIABLE_ONLY)
    storage_service_account: str | None = Field(
        "makeusrich-storage",
        validation_alias="MAKEUSRICH_STORAGE_SERVICE_ACCOUNT",
        description="ServiceAccount of the predictor, listing the S3 Secret for KServe; '' for the namespace default",
    )
    namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="namespaces to watch, comma-separated (default: all)", json_schema_extra=_VARIABLE_ONLY
    )
    reconcile_interval_s: float = Field(
        60.0,
        gt=0,
        description="seconds between level-based reconciles of each pair",
        json_schema_extra={"flag": "--interval"},
    )
    # Canonical quantities ("500m", "2Gi"): the API server rewrites others, which would look like drift.
    trainer_requests: dict[str, str] = Field(
        {"cpu": "1", "memory": "2Gi"}, description="trainer pod requests (JSON)", json_schema_extra=_VARIABLE_ONLY
    )
    trainer_limits: dict[str, str] = Field(
        {"cpu": "2", "memory": "4Gi"}, description="trainer pod limits (JSON)", json_schema_extra=_VARIABLE_ONLY
    )
    # Where trainer pods run: a GPU pool (with "nvidia.com/gpu" in requests and limits and the CUDA image) or any.
    trainer_node_selector: dict[str, str] = Field(
        {}, description="trainer pods' nodeSelector (JSON)", json_schema_extra=_VARIABLE_ONLY
    )
    trainer_tolerations: list[dict[str, Any]] = Field(
        [], description="trainer pods' tolerations (JSON list)", json_schema_extra=_VARIABLE_ONLY
    )
    trainer_service_account: str | None = Field(
        None, description="trainer pods' ServiceAccount (default: the namespace's)", json_schema_extra=_VARIABLE_ONLY
    )
    tmp_size: str = Field("2Gi", description="size of the trainer's /tmp", json_schema_extra=_VARIABLE_ONLY)
    run_as_user: int = Field(10001, description="trainer pods' user id", json_schema_extra=_VARIABLE_ONLY)
    successful_jobs_history: int = Field(3, ge=0, description="Jobs kept", json_schema_extra=_VARIABLE_ONLY)
    failed_jobs_history: int = Field(3, ge=0, description="failed Jobs kept", json_schema_extra=_VARIABLE_ONLY)
    starting_deadline_seconds: int = Field(
        3600, ge=1, description="how late a missed run may start", json_schema_extra=_VARIABLE_ONLY
    )
    backoff_limit: int = Field(1, ge=0, description="retries of a failed Job", json_schema_extra=_VARIABLE_ONLY)
    active_deadline_seconds: int = Field(
        6 * 3600, ge=1, description="longest a training Job may run", json_schema_extra=_VARIABLE_ONLY
    )
    # The first Job is not owned by the CronJob, so its history limits do not clean it up.
    initial_job_ttl_seconds: int = Field(
        7 * 86400, ge=0, description="how long the first Job stays", json_schema_extra=_VARIABLE_ONLY
    )

    @field_validator(
        "s3_endpoint",
        "s3_use_https",
        "s3_verify_tls",
        "aws_region",
        "storage_service_account",
        "trainer_service_account",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(n.strip() for n in value.split(",") if n.strip()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _store_scheme(self) -> Self:
        if urlparse(self.store_url).scheme not in ("s3", "file", ""):
            raise ValueError(f"store URL {self.store_url!r} is not s3://bucket[/prefix] or file:///path")
        return self
