"""Dynamic batching on a real SavedModel: concurrent requests share model calls and each gets
its own answer; oversize requests, a full queue and a bad request fail alone."""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import Batcher, BatchingOptions
from serving.errors import ServingError
from serving.saved_model import load_saved_model
from tests.serving.conftest import Server


@pytest.fixture(scope="module")
def servable(half_plus_models):
    return load_saved_model("half_plus_two", 1, str(half_plus_models / "1"))


def batcher(servable, batches, **options):
    return Batcher(lambda inputs: servable.run("serving_default", inputs), BatchingOptions(**options),
                   ThreadPoolExecutor(2), batches.append)


def x(*values):
    return {"x": np.array([[v] for v in values], np.float32)}


def test_concurrent_requests_share_batches_and_get_their_own_answers(servable):
    batches = []

    async def run():
        queue = batcher(servable, batches, max_batch_size=16, batch_timeout_micros=20000, num_batch_threads=1)
        return await asyncio.gather(*(queue.submit(x(float(i))) for i in range(40)))

    results = asyncio.run(run())
    assert [float(r["y"][0, 0]) for r in results] == [0.5 * i + 2 for i in range(40)]
    assert sum(batches) == 40 and max(batches) == 16 and len(batches) < 40


def test_oversize_requests_and_a_full_queue_are_refused(servable):
    async def run():
        queue = batcher(servable, [], max_batch_size=4, batch_timeout_micros=50000, max_enqueued_batches=2,
                        num_batch_threads=1)
        with pytest.raises(ServingError) as oversize:
            queue.submit(x(*range(5)))
        queued = []
        for _ in range(10):
            try:
                queued.append(queue.submit(x(1.0, 2.0)))
            except ServingError as refused:
                queued.append(refused)
        results = [item if isinstance(item, ServingError) else await item for item in queued]
        return oversize.value, results

    oversize, results = asyncio.run(run())
    assert oversize.code == "INVALID_ARGUMENT"
    assert "Task size 5 is larger than maximum input batch size 4" in oversize.message
    refused = [r for r in results if isinstance(r, ServingError)]
    assert refused and all(r.code == "UNAVAILABLE" and "queue" in r.message for r in refused)
    assert all(r["y"].tolist() == [[2.5], [3.0]] for r in results if not isinstance(r, Exception))


def test_a_bad_request_in_a_batch_fails_alone(servable):
    async def run():
        queue = batcher(servable, [], max_batch_size=16, batch_timeout_micros=20000)
        bad = {"x": np.array([["a"]], object)}
        return await asyncio.gather(queue.submit(x(1.0)), queue.submit(bad), queue.submit(x(3.0)),
                                    return_exceptions=True)

    good_one, bad, good_two = asyncio.run(run())
    assert good_one["y"].tolist() == [[2.5]] and good_two["y"].tolist() == [[3.5]]
    assert isinstance(bad, ServingError) and bad.code == "INVALID_ARGUMENT"


# ---------------------------------------------------------------- every BatchingParameters field

@pytest.fixture(scope="module")
def viewer(model_zoo):
    """The TF2 module's batch_view signature: each row gets the batch size the model call saw."""
    return load_saved_model("tf2_module", 1, str(model_zoo["tf2_module"]))


def run_together(servable, requests_, **options):
    async def run():
        queue = Batcher(lambda inputs: servable.run("batch_view", inputs), BatchingOptions(**options),
                        ThreadPoolExecutor(2))
        return await asyncio.gather(*(queue.submit({"v": v}) for v in requests_))

    return asyncio.run(run())


def rows(count, width=2, start=0.0):
    return np.arange(start, start + count * width, dtype=np.float32).reshape(count, width)


def test_allowed_batch_sizes_pad_each_batch_to_the_next_allowed_size(viewer):
    (alone,) = run_together(viewer, [rows(3)], max_batch_size=16, allowed_batch_sizes=(4, 8, 16))
    assert alone["batch"].tolist() == [4, 4, 4]  # the model saw 4 rows: 3 and one of padding
    np.testing.assert_array_equal(alone["echo"], rows(3))  # the padding's outputs are dropped
    together = run_together(viewer, [rows(3), rows(2, start=10)], max_batch_size=16, allowed_batch_sizes=(4, 8, 16),
                            batch_timeout_micros=100000)
    assert [r["batch"].tolist() for r in together] == [[8, 8, 8], [8, 8]]
    np.testing.assert_array_equal(together[1]["echo"], rows(2, start=10))


def test_large_batch_splitting_runs_a_big_request_in_parts_of_max_execution_batch_size(viewer):
    (split,) = run_together(viewer, [rows(20)], max_batch_size=32, enable_large_batch_splitting=True,
                            max_execution_batch_size=8)
    assert split["batch"].tolist() == [8] * 16 + [4] * 4
    np.testing.assert_array_equal(split["echo"], rows(20))
    # Without splitting, max_execution_batch_size has no effect, as in TF Serving.
    (whole,) = run_together(viewer, [rows(20)], max_batch_size=32, max_execution_batch_size=8)
    assert whole["batch"].tolist() == [20] * 20


def test_pad_variable_length_inputs_pads_to_the_longest_with_the_first_element(viewer):
    short, long = rows(1, width=2, start=5), rows(1, width=4)
    padded = run_together(viewer, [short, long], max_batch_size=8, pad_variable_length_inputs=True,
                          batch_timeout_micros=100000)
    assert [r["batch"].tolist() for r in padded] == [[2], [2]]  # one call for both
    assert padded[0]["echo"].tolist() == [[5.0, 6.0, 5.0, 5.0]]
    # Without it, requests of different widths still get their own answers, one call each.
    unpadded = run_together(viewer, [short, long], max_batch_size=8, batch_timeout_micros=100000)
    assert [r["echo"].tolist() for r in unpadded] == [short.tolist(), long.tolist()]


@pytest.mark.parametrize("text, message", [
    # tensorflow_serving/batching/batching_session.cc:1010-1047
    ("max_batch_size { value: 32 } enable_large_batch_splitting { value: true } max_execution_batch_size { value: 8 } "
     "allowed_batch_sizes: [4, 16]",
     "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last entry was 16; expected 8"),
    ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } max_execution_batch_size { value: 16 } "
     "allowed_batch_sizes: [4, 16]",
     "Last entry in allowed_batch_sizes must be less than or equal to max_batch_size; last entry was 16; expected 8"),
    ("max_batch_size { value: 8 } enable_large_batch_splitting { value: true } max_execution_batch_size { value: 16 }",
     "max_execution_batch_size (16) must not be larger than max_batch_size (8)"),
])
def test_inconsistent_batching_parameters_stop_the_server_in_one_line(half_plus_models, tmp_path, text, message):
    (tmp_path / "batching.txt").write_text(text + "\n")
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two", "--enable_batching",
                     f"--batching_parameters_file={tmp_path / 'batching.txt'}"], tmp_path)
    assert server.process.wait(timeout=120) == 1
    assert server.log().strip().splitlines()[-1] == (f"tfxline serve: {message}; fix {tmp_path / 'batching.txt'}")


def test_every_batching_field_reaches_the_server(half_plus_models, tmp_path):
    """A file using all four fields is accepted and served (none is parsed and then dropped)."""
    (tmp_path / "batching.txt").write_text(
        "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000 }\nenable_large_batch_splitting { value: "
        "true }\nmax_execution_batch_size { value: 8 }\nallowed_batch_sizes: [4, 8]\n"
        "pad_variable_length_inputs: true\n")
    server = Server([f"--model_base_path={half_plus_models}", "--model_name=half_plus_two", "--enable_batching",
                     f"--batching_parameters_file={tmp_path / 'batching.txt'}"], tmp_path)
    try:
        server.wait_ready("/v1/models/half_plus_two")
        import requests

        body = {"instances": [[float(i)] for i in range(20)]}
        answer = requests.post(server.url + "/v1/models/half_plus_two:predict", json=body, timeout=60).json()
        assert answer == {"predictions": [[0.5 * i + 3] for i in range(20)]}
    finally:
        server.stop()
