"""Dynamic batching on a real SavedModel: concurrent requests share model calls and each gets
its own answer; oversize requests, a full queue and a bad request fail alone."""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import Batcher, BatchingOptions
from serving.errors import ServingError
from serving.saved_model import load_saved_model


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
    assert oversize.code == "INVALID_ARGUMENT" and "Task size 5 is larger than maximum input batch size 4" in oversize.message
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
