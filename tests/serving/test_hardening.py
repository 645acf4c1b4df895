"""A real `tfxline serve` under hostile input: oversized URLs and headers, clients that trickle
bytes, too many connections, a wrong token with a large body, truncated gzip, SIGTERM with
requests in flight, oversized and over-expanding gRPC messages, and metrics that a made-up
model name could corrupt (scraped by a real Prometheus)."""
import gzip
import json
import os
import signal
import socket
import subprocess
import threading
import time
from urllib.parse import quote

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from tests.serving.conftest import Server, free_port, models_config, wait_until

PREDICT = "/v1/models/half_plus_two:predict"
BODY = json.dumps({"instances": [[1.0]]}).encode()


def raw(server, data: bytes, timeout: float = 5.0) -> bytes:
    """Sends bytes on a fresh connection; returns everything read until the server closes it
    or `timeout` passes."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock, timeout)


def read_all(sock, timeout: float) -> bytes:
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def still_serving(server):
    response = requests.post(server.url + PREDICT, data=BODY, timeout=30)
    assert response.status_code == 200, response.text


def test_urls_and_headers_beyond_the_limits_are_refused(server):
    long_url = raw(server, b"GET /v1/models/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert long_url.startswith(b"HTTP/1.1 414 ")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    assert raw(server, b"GET /v1/models/half_plus_two HTTP/1.1\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431 ")
    big = b"X-Big: " + b"v" * (70 << 10) + b"\r\n"
    assert raw(server, b"GET /v1/models/half_plus_two HTTP/1.1\r\n" + big + b"\r\n").startswith(b"HTTP/1.1 431 ")
    still_serving(server)


def test_truncated_or_corrupt_gzip_bodies_are_refused(server):
    # The JSON is complete long before the gzip stream ends: a server that decompresses what
    # arrived without checking the end would answer it.
    whole = gzip.compress(BODY + b" " * 4000)
    for body in (whole[:-8], whole + b"not gzip"):
        response = requests.post(server.url + PREDICT, data=body, headers={"Content-Encoding": "gzip"}, timeout=30)
        assert response.status_code == 400, response.text
        assert "gzip" in response.json()["error"]
    fine = requests.post(server.url + PREDICT, data=whole, headers={"Content-Encoding": "gzip"}, timeout=30)
    assert fine.json() == {"predictions": [[3.5]]}


@pytest.fixture(scope="module")
def guarded(half_plus_models, tmp_path_factory):
    """A server with a token, tight header deadline, a small connection cap and request limit."""
    directory = tmp_path_factory.mktemp("guarded")
    (directory / "token").write_text("s3cret\n")
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two",
                     f"--auth_token_file={directory / 'token'}", "--header-timeout-seconds=1",
                     "--max-connections=6", "--max_request_bytes=1000000"], directory)
    try:
        server.wait_ready("/healthz")
        yield server
    finally:
        server.stop()


AUTH = {"Authorization": "Bearer s3cret"}


def test_a_slow_client_cannot_keep_pushing_back_the_header_deadline(guarded):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", guarded.rest_port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models/half_plus_two HTTP/1.1\r\nX-Slow: ")
        answer = b""
        for _ in range(20):  # one byte every 0.25 s for up to 5 s
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            answer += read_all(sock, 0.25)
            if answer:
                break
        answer += read_all(sock, 1)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert time.monotonic() - started < 3


def test_the_token_is_checked_before_the_body_is_read(guarded):
    # Headers announce 10 MB and no body follows: the refusal comes at once, nothing is buffered.
    head = (b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
            b"Content-Encoding: gzip\r\nAuthorization: Bearer wrong\r\n\r\n")
    started = time.monotonic()
    answer = raw(guarded, head, timeout=5)
    assert answer.startswith(b"HTTP/1.1 401 ") and b"bearer token" in answer
    assert time.monotonic() - started < 3
    with_token = raw(guarded, head.replace(b"Bearer wrong", b"Bearer s3cret"), timeout=5)
    assert with_token.startswith(b"HTTP/1.1 413 ")  # over --max_request_bytes, also said at once
    fine = requests.post(guarded.url + PREDICT, data=BODY, headers=AUTH, timeout=30)
    assert fine.json() == {"predictions": [[3.5]]}


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(guarded):
    # Ten at once against a cap of 6 (less any an earlier test left open): the admitted ones wait
    # in silence (for the 1 s header deadline), the others are answered 503 and closed.
    sockets = [socket.create_connection(("127.0.0.1", guarded.rest_port), timeout=5) for _ in range(10)]
    try:
        time.sleep(0.2)
        answers = [read_all(sock, 0.03) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    refused = [answer for answer in answers if answer]
    assert 4 <= len(refused) < 10
    assert all(answer.startswith(b"HTTP/1.1 503 ") and b"too many open connections" in answer for answer in refused)
    guarded.wait_ready("/healthz", timeout=10)


def test_grpc_messages_are_limited_by_max_request_bytes(guarded):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{guarded.grpc_port}"))
    metadata = [("authorization", "Bearer s3cret")]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones([300_000, 1], np.float32)))  # 1.2 MB
    with pytest.raises(grpc.RpcError) as too_big:
        stub.Predict(request, timeout=30, metadata=metadata)
    assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # One value declared to fill 10 million elements (40 MB): refused, not expanded.
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(1.0, dtype=tf.float32, shape=[10_000_000, 1]))
    assert request.ByteSize() < 100
    with pytest.raises(grpc.RpcError) as expanding:
        stub.Predict(request, timeout=30, metadata=metadata)
    assert expanding.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expanding.value.details() == ("input x declares shape [10000000,1] (10000000 elements) but sends 1 value; "
                                         "filling it takes 40000000 bytes, more than --max_request_bytes (1000000)")
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(1.0, dtype=tf.float32, shape=[3, 1]))
    assert list(stub.Predict(request, timeout=30, metadata=metadata).outputs["y"].float_val) == [3.5] * 3


def test_every_grpc_call_needs_the_token_and_it_is_compared_in_constant_time(guarded, monkeypatch):
    """HandleReloadConfigRequest too. The comparison itself is hmac.compare_digest, in-process."""
    channel = grpc.insecure_channel(f"127.0.0.1:{guarded.grpc_port}")
    reload = model_management_pb2.ReloadConfigRequest()
    reload.config.model_config_list.SetInParent()
    for metadata in ((), [("authorization", "Bearer wrong")]):
        with pytest.raises(grpc.RpcError) as denied:
            model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(reload, timeout=30,
                                                                                        metadata=metadata)
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED

    import hmac
    from serving import grpc_api

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    interceptor = grpc_api._BearerToken("s3cret")

    class Details:
        invocation_metadata = (("authorization", "Bearer s3cre7"),)

    async def call():
        return await interceptor.intercept_service(lambda details: None, Details())

    import asyncio

    assert asyncio.run(call()) is interceptor._deny
    assert compared == [(b"Bearer s3cre7", b"Bearer s3cret")]


# ---------------------------------------------------------------- graceful drain


def test_sigterm_answers_requests_in_flight_and_refuses_new_ones(model_zoo, tmp_path):
    server = Server([f"--model_base_path={model_zoo['tf2_module'].parent}", "--model_name=tf2_module"], tmp_path)
    server.wait_ready("/v1/models/tf2_module")
    spin = server.url + "/v1/models/tf2_module:predict"
    idle = requests.Session()
    assert idle.get(server.url + "/v1/models/tf2_module", timeout=30).ok  # a kept-alive connection, now idle
    result = {}

    def slow():
        body = {"signature_name": "spin", "instances": [1_000_000]}  # about 3 s of work
        result["response"] = requests.post(spin, data=json.dumps(body), timeout=60)

    in_flight = threading.Thread(target=slow)
    in_flight.start()
    time.sleep(1.0)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/v1/models/tf2_module", timeout=5)  # the port is closed
    with pytest.raises(requests.ConnectionError):
        idle.get(server.url + "/v1/models/tf2_module", timeout=5)  # so is the idle connection
    in_flight.join(60)
    assert result["response"].status_code == 200, result["response"].text
    assert result["response"].json() == {"predictions": [1_000_000]}
    assert server.process.wait(30) == 0


# ---------------------------------------------------------------- metrics, scraped by Prometheus

TRICKY = 'half "two"\\ with\na newline'


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A real Prometheus on a loopback port; scrape targets are added as files it re-reads."""
    binary = "/usr/bin/prometheus"
    if not os.path.exists(binary):
        pytest.fail("Prometheus is not installed: apt-get install -y prometheus")
    directory = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (directory / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: tfxline\n"
        "    metrics_path: /monitoring/prometheus/metrics\n"
        f"    file_sd_configs: [{{files: ['{directory}/targets.json'], refresh_interval: 1s}}]\n")
    (directory / "targets.json").write_text("[]")
    process = subprocess.Popen([binary, f"--config.file={directory / 'prometheus.yml'}",
                                f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=open(directory / "prometheus.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ok(url + "/-/ready"), timeout=60)
        yield url, directory
    finally:
        process.terminate()
        process.wait(30)


def _ok(url):
    try:
        return requests.get(url, timeout=1).ok
    except requests.ConnectionError:
        return False


def query(url, promql):
    return requests.get(url + "/api/v1/query", params={"query": promql}, timeout=10).json()["data"]["result"]


def test_label_values_are_escaped_and_unknown_models_create_no_series(half_plus_models, prometheus, tmp_path):
    url, directory = prometheus
    escaped = TRICKY.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    (tmp_path / "models.config").write_text(models_config(half_plus_models).replace(
        'name: "half_plus_two"', f'name: "{escaped}"'))
    (tmp_path / "monitoring.config").write_text("prometheus_config { enable: true }\n")
    server = Server([f"--model_config_file={tmp_path / 'models.config'}",
                     f"--monitoring_config_file={tmp_path / 'monitoring.config'}"], tmp_path)
    try:
        server.wait_ready("/healthz")
        tricky = f"{server.url}/v1/models/{quote(TRICKY, safe='')}:predict"
        assert requests.post(tricky, data=BODY, timeout=30).json() == {"predictions": [[3.5]]}
        for index in range(30):  # made-up names, one trying to forge a line
            name = quote(f'nope{index}\n:forged_metric{{a="b"}} 1', safe="")
            assert requests.post(f"{server.url}/v1/models/{name}:predict", data=BODY, timeout=30).status_code == 404
        (directory / "targets.json").write_text(json.dumps([{"targets": [f"127.0.0.1:{server.rest_port}"]}]))
        wait_until(lambda: query(url, ':tensorflow:serving:request_count{status="NOT_FOUND"}'), timeout=60)
        assert [sample["value"][1] for sample in query(url, "up")] == ["1"]  # the page parsed
        series = query(url, ":tensorflow:serving:request_count")
        # Prometheus keeps an empty label value as no label at all.
        assert {(s["metric"].get("model_name", ""), s["metric"]["status"], s["value"][1]) for s in series} == {
            (TRICKY, "OK", "1"), ("", "NOT_FOUND", "30")}
        assert query(url, "forged_metric") == [] and query(url, '{__name__=~".*forged.*"}') == []
    finally:
        server.stop()
        (directory / "targets.json").write_text("[]")
