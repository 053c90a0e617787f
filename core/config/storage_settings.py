"""The ``storage`` section of a search config: how to reach an object store.

Used when ``output_dir``, ``teacher_cache.dir`` or a dataset path is an ``s3://`` URI
(:mod:`kdforge.storage`). Credentials are deliberately not settings: they come from
the environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``) or
the machine's role, so they never land in a config file, a log or MLflow.
"""

from __future__ import annotations

from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kdforge.storage import StorageOptions

__all__ = ["StorageSettings"]


class StorageSettings(BaseModel):
    """Object storage for s3:// URIs (credentials only from the environment)."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(
        None,
        description="http(s)://host:port of an S3-compatible store (MinIO, Ceph); default: "
        "AWS, or the AWS_ENDPOINT_URL variable. Credentials come from AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, never from this file.",
    )
    region: str | None = Field(
        None, description="The buckets' region (default: AWS_REGION, else us-east-1)."
    )
    local_dir: str | None = Field(
        None,
        description="Local folder for mirrored search folders, teacher-cache entries and "
        "downloaded datasets (default: ~/.cache/kdforge/storage).",
    )

    @field_validator("endpoint_url")
    @classmethod
    def _plain_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{value!r} is not an http(s)://host[:port] URL")
        if parsed.username or parsed.password:
            # Keep secrets out of config.yaml, MLflow params and logs.
            raise ValueError(
                "endpoint_url must not hold credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the environment"
            )
        return value.rstrip("/")

    def options(self) -> StorageOptions:
        """These settings as :mod:`kdforge.storage` takes them."""
        return StorageOptions(self.endpoint_url, self.region, self.local_dir)
