"""``kdforge serve`` (MLflow's scoring server with kdforge's limits) started for real.

One server per module: started through the ``kdforge serve`` command line from the
search folder, asked for predictions that must equal the PyTorch student, sent bad
requests that must get a 4xx with a message while it keeps serving, then stopped
(teardown checks that stopping ``kdforge serve`` leaves nothing on the port).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.deploy.bad_requests import bad_requests, good_body
from tests.deploy.conftest import (
    RegisteredStudent,
    free_port,
    kdforge_cli,
    port_is_closed,
    post,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(registered_student: RegisteredStudent):
    port = free_port()
    argv = kdforge_cli(
        "serve",
        str(registered_student.search_dir),
        "--port",
        str(port),
        "--max-batch-size",
        "1024",
        "--max-body-mb",
        "2",
    )
    process = start_server(argv, f"http://127.0.0.1:{port}/ping")
    yield f"http://127.0.0.1:{port}", process
    # Stopping `kdforge serve` must stop mlflow's uvicorn child too: the port is freed.
    assert stop_server(process) == 0
    assert port_is_closed(port)


def test_predictions_equal_the_pytorch_student(mlflow_server, registered_student):
    url, _ = mlflow_server
    status, answer = post(f"{url}/invocations", good_body(registered_student.test_x))
    assert status == 200, answer
    served = np.asarray(answer["predictions"]["logits"], dtype=np.float32)
    np.testing.assert_allclose(served, registered_student.torch_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["wrong shape", "wrong dtype", "missing field", "non-JSON"])
def test_bad_request_gets_4xx_and_server_keeps_serving(mlflow_server, registered_student, case):
    url, process = mlflow_server
    body = bad_requests(registered_student.test_x)[case]
    status, answer = post(f"{url}/invocations", body)
    assert 400 <= status < 500, (case, status, answer)
    assert answer.get("message"), answer
    status, answer = post(f"{url}/invocations", good_body(registered_student.test_x[:1]))
    assert status == 200 and process.poll() is None


def test_limits_are_enforced_over_http(mlflow_server, registered_student):
    """Batches over --max-batch-size and bodies over --max-body-mb get 413, non-finite
    inputs 400 with a JSON body; the server goes on serving."""
    url, process = mlflow_server
    one = registered_student.test_x[:1]
    status, answer = post(f"{url}/invocations", good_body(np.repeat(one, 1024, axis=0)))
    assert status == 200 and len(answer["predictions"]["logits"]) == 1024
    status, answer = post(f"{url}/invocations", good_body(np.repeat(one, 1025, axis=0)))
    assert status == 413 and "1025 rows exceeds the limit of 1024" in answer["message"]
    huge = good_body(np.repeat(one, 100_000, axis=0))  # ~the 100k-row body
    assert len(huge) > 2_000_000
    status, answer = post(f"{url}/invocations", huge)
    assert status == 413 and answer["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    for token in ("NaN", "Infinity", "null"):
        body = json.dumps({"inputs": [[float("nan")]]}).replace("NaN", token)
        status, answer = post(f"{url}/invocations", body.encode())
        assert status == 400 and token in answer["message"], (token, answer)
    status, _ = post(f"{url}/invocations", good_body(one))
    assert status == 200 and process.poll() is None
