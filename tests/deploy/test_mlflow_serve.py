"""``kdforge serve`` (mlflow models serve) started for real on 127.0.0.1.

One server per module: started through the ``kdforge serve`` command line from the
search folder, asked for predictions that must equal the PyTorch student, sent bad
requests that must get a 4xx with a message while it keeps serving, then stopped
(teardown checks that stopping ``kdforge serve`` leaves nothing on the port).
"""

from __future__ import annotations

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
    argv = kdforge_cli("serve", str(registered_student.search_dir), "--port", str(port))
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


def test_mlflow_server_has_no_batch_limit(mlflow_server, registered_student):
    """Documented limitation: mlflow models serve answers any batch size (the Ray app caps it)."""
    url, _ = mlflow_server
    big = np.repeat(registered_student.test_x[:1], 2048, axis=0)
    status, answer = post(f"{url}/invocations", good_body(big))
    assert status == 200
    assert len(answer["predictions"]["logits"]) == 2048
