"""A real S3-compatible server on 127.0.0.1 for tests: moto in server mode.

Not a mock of the client: kdforge's pyarrow S3 filesystem and Ray Tune talk HTTP to
it exactly as they would to MinIO or AWS. Test credentials are set only while it runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "kdforge-test",
    "AWS_SECRET_ACCESS_KEY": "kdforge-test-secret",
    "AWS_REGION": "us-east-1",
    # No instance-metadata lookups for credentials on a machine without a role.
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class S3Server:
    """A running server: its endpoint and one empty bucket."""

    endpoint: str
    bucket: str

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 client for looking into the bucket."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@contextmanager
def s3_server(bucket: str = "kdforge-test") -> Iterator[S3Server]:
    """Start moto's server on a free port of 127.0.0.1 with ``bucket`` created."""
    from moto.server import ThreadedMotoServer

    saved = {key: os.environ.get(key) for key in TEST_ENV}
    os.environ.update(TEST_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    found = S3Server(f"http://{host}:{port}", bucket)
    found.client().create_bucket(Bucket=bucket)
    try:
        yield found
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
