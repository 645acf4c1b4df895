"""The gRPC layer alone, for the serving benchmark: tensorflow.serving.PredictionService on
grpc.aio and uvloop, as `tfxline serve` runs it, with a Predict that answers an empty
PredictResponse without looking at the request (the request is still received and parsed).

Usage: .venv/bin/python benchmarks/serving/empty_grpc_server.py --port 8600
"""
import argparse

import grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.http import run_event_loop

EMPTY = predict_pb2.PredictResponse()


class Empty(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request, context):
        return EMPTY


async def serve(port: int) -> None:
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Empty(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8600)
    run_event_loop(serve(parser.parse_args().port))
