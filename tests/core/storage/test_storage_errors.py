"""Object storage that cannot be used fails in one line, before any training, against a
real S3-compatible server (moto) on 127.0.0.1; downloads happen once per object version."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import yaml

from kdforge.cli import main
from kdforge.config import SearchConfig
from kdforge.errors import ConfigError, DataError, SearchError
from kdforge.search.remote import check_storage, open_search_dir
from kdforge.storage import StorageOptions, cached_copy, check_location, configure
from kdforge.storage import location as storage_location
from tests.conftest import tiny_search_config
from tests.s3_server import S3Server, s3_server


@pytest.fixture(scope="module")
def s3():
    with s3_server(bucket="kdforge-errors") as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_settings(s3: S3Server, tmp_path: Path):
    configure(StorageOptions(s3.endpoint, "us-east-1", str(tmp_path / "local")))
    yield
    configure(StorageOptions())


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _search(tmp_path: Path, capsys: pytest.CaptureFixture[str], **overrides: object) -> str:
    raw = tiny_search_config(tmp_path / "teacher.pt", tmp_path, **overrides)
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["search", str(config)]) == ConfigError.exit_code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err  # error + hint
    assert not (tmp_path / "runs").exists()
    return err


def test_missing_bucket_names_the_uri_and_the_fix(
    s3: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = {"endpoint_url": s3.endpoint, "region": "us-east-1"}
    err = _search(tmp_path, capsys, output_dir="s3://no-such-bucket/runs", storage=storage)
    assert "error: output_dir: bucket 'no-such-bucket' of s3://no-such-bucket/runs" in err
    assert "create the bucket" in err


def test_wrong_endpoint_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    err = _search(
        tmp_path,
        capsys,
        output_dir="s3://kdforge-errors/runs",
        storage={"endpoint_url": endpoint, "region": "us-east-1"},
    )
    assert f"cannot reach the object store at {endpoint} for s3://kdforge-errors/runs" in err
    assert "storage.endpoint_url" in err


def test_refused_credentials_say_where_they_come_from(s3: S3Server) -> None:
    from moto import settings

    # The server now checks signatures against its (empty) user list, as a real store does.
    saved = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        with pytest.raises(ConfigError, match="refused access to s3://kdforge-errors/runs") as err:
            check_location("s3://kdforge-errors/runs", "output_dir", write=True)
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = saved
    assert "AWS_ACCESS_KEY_ID" in (err.value.hint or "")


def test_teacher_cache_in_a_missing_bucket_is_caught_up_front(s3: S3Server, tmp_path: Path) -> None:
    raw = tiny_search_config(tmp_path / "t.pt", tmp_path, **{"teacher_cache.dir": "s3://nope/c"})
    raw["storage"] = {"endpoint_url": s3.endpoint, "region": "us-east-1"}
    with pytest.raises(ConfigError, match=r"teacher_cache\.dir: bucket 'nope'"):
        check_storage(SearchConfig.model_validate(raw))


def test_dataset_object_is_downloaded_once_per_version(s3: S3Server) -> None:
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="d/a.npy", Body=b"first")
    uri = f"s3://{s3.bucket}/d/a.npy"
    first = cached_copy(uri, "dataset")
    stamp = first.stat().st_mtime_ns
    assert cached_copy(uri, "dataset") == first and first.stat().st_mtime_ns == stamp
    client.put_object(Bucket=s3.bucket, Key="d/a.npy", Body=b"second, longer")
    again = cached_copy(uri, "dataset")
    assert again != first and again.read_bytes() == b"second, longer"
    with pytest.raises(DataError, match=r"dataset: s3://kdforge-errors/d/missing.npy does not"):
        cached_copy(f"s3://{s3.bucket}/d/missing.npy", "dataset")


def test_resume_from_an_empty_prefix_says_so(s3: S3Server) -> None:
    with pytest.raises(SearchError, match="holds no kdforge search folder"):
        open_search_dir(f"s3://{s3.bucket}/runs/none/20260101-000000")


def test_credentials_never_go_in_the_config() -> None:
    with pytest.raises(ValueError, match="must not hold credentials") as err:
        SearchConfig.model_validate(
            {
                **tiny_search_config(Path("t.pt"), Path(".")),
                "storage": {"endpoint_url": "http://u:pw@h:9"},
            }
        )
    assert "AWS_SECRET_ACCESS_KEY" in str(err.value)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        SearchConfig.model_validate(
            {**tiny_search_config(Path("t.pt"), Path(".")), "storage": {"secret_access_key": "x"}}
        )


def test_missing_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.fs", None)  # as if it were not installed
    monkeypatch.setattr(storage_location, "_filesystems", {})
    with pytest.raises(ConfigError, match="needs pyarrow") as err:
        storage_location.filesystem_for("s3://b/x")
    assert "kdforge[s3]" in (err.value.hint or "")
