"""``kdforge serve --ray``: the Ray Serve application started for real on 127.0.0.1.

The command runs in a second process that joins the test session's Ray cluster, so
the test can also look at Serve's state; it is sent the same requests as the MLflow
server, plus an oversized batch, which only this server refuses (413).
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

MAX_BATCH = 8


@pytest.fixture(scope="module")
def ray_server(ray_session, registered_student: RegisteredStudent):
    port = free_port()
    address = ray_session.get_runtime_context().gcs_address
    argv = kdforge_cli(
        "serve",
        registered_student.model_uri,
        "--ray",
        "--tracking-uri",
        registered_student.tracking_uri,
        "--address",
        address,
        "--port",
        str(port),
        "--max-batch-size",
        str(MAX_BATCH),
        "--replica-cpus",
        "0.25",
        "--max-replicas",
        "2",
    )
    process = start_server(argv, f"http://127.0.0.1:{port}/ping", timeout_s=180)
    yield f"http://127.0.0.1:{port}", process
    # Stopping `kdforge serve --ray` must shut Serve down: no proxy left on the port.
    assert stop_server(process) == 0
    assert port_is_closed(port)


def test_predictions_equal_the_pytorch_student(ray_server, registered_student):
    url, _ = ray_server
    status, answer = post(f"{url}/invocations", good_body(registered_student.test_x[:MAX_BATCH]))
    assert status == 200, answer
    served = np.asarray(answer["predictions"]["logits"], dtype=np.float32)
    np.testing.assert_allclose(
        served, registered_student.torch_logits[:MAX_BATCH], atol=1e-4, rtol=1e-4
    )


def test_replicas_run_with_autoscaling(ray_server):
    from ray import serve

    app = serve.status().applications["kdforge"]
    assert app.status == "RUNNING"
    deployment = app.deployments["kdforge-student"]
    assert deployment.status == "HEALTHY"
    assert sum(deployment.replica_states.values()) >= 1


@pytest.mark.parametrize("case", ["wrong shape", "wrong dtype", "missing field", "non-JSON"])
def test_bad_request_gets_400_and_server_keeps_serving(ray_server, registered_student, case):
    url, process = ray_server
    status, answer = post(f"{url}/invocations", bad_requests(registered_student.test_x)[case])
    assert status == 400, (case, status, answer)
    assert answer["message"], answer
    status, _ = post(f"{url}/invocations", good_body(registered_student.test_x[:1]))
    assert status == 200 and process.poll() is None


def test_oversized_batch_gets_413(ray_server, registered_student):
    url, process = ray_server
    big = np.repeat(registered_student.test_x[:1], MAX_BATCH + 1, axis=0)
    status, answer = post(f"{url}/invocations", good_body(big))
    assert status == 413
    assert f"max_batch_size={MAX_BATCH}" in answer["message"]
    status, _ = post(f"{url}/invocations", good_body(big[:MAX_BATCH]))
    assert status == 200 and process.poll() is None


def test_serve_run_builder_and_fetch_errors(registered_student):
    from ray.serve import Application

    from kdforge.deploy.ray_serve_app import build_app
    from kdforge.errors import TrackingError
    from kdforge.tracking.registry import fetch_onnx_model

    model = fetch_onnx_model(registered_student.model_uri, registered_student.tracking_uri)
    assert (model.input_name, model.output_name) == ("input", "logits")
    assert model.input_shape == (-1, 1, 8, 8) and model.input_dtype == "float32"
    args = {
        "model_uri": registered_student.model_uri,
        "tracking_uri": registered_student.tracking_uri,
    }
    assert isinstance(build_app({**args, "max_batch_size": "8", "num_cpus": "0.5"}), Application)
    with pytest.raises(ValueError, match="unknown arguments"):
        build_app({**args, "max_batch": "8"})
    with pytest.raises(TrackingError, match="cannot fetch model"):
        fetch_onnx_model("models:/deploy-test-student@nope", registered_student.tracking_uri)
