# The two set-up commands of the README: `make run` and `make test`.
VENV := .venv
PYTEST_ARGS ?=

.PHONY: run test test-all env protos

env:
	@./.ci/bootstrap

run: env
	$(VENV)/bin/tfxline run

# Default test run: everything but tests marked slow (full pipeline runs on the whole data).
test: env
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-all: env
	$(VENV)/bin/python -m pytest -m "" $(PYTEST_ARGS)

# serving/protos/*_pb2.py from their .proto files (tests/serving/test_protos.py checks that they match).
protos: env
	$(VENV)/bin/python -m grpc_tools.protoc -I. --python_out=. serving/protos/*.proto
