# The two set-up commands of the README: `make run` and `make test`.
VENV := .venv
PYTEST_ARGS ?=
FAST_TIER := tests/code tests/data tests/model tests/serving tests/edge tests/scoring

.PHONY: run test test-fast test-all lint env system-packages protos

env:
	@./.ci/bootstrap

system-packages:
	@./.ci/install-system-packages

run: env
	$(VENV)/bin/tfxline run

# Layers and style first: a change that breaks a layer fails here, in seconds.
lint: env
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .

# The default test run: the fast tier and the end-to-end tier (real pipeline runs on a sample);
# tests marked slow (full-data runs) are left out.
test: lint system-packages
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Code, data, model, serving and edge tests: no pipeline run.
test-fast: lint system-packages
	$(VENV)/bin/python -m pytest -m "not slow and not e2e" $(FAST_TIER) $(PYTEST_ARGS)

test-all: lint system-packages
	$(VENV)/bin/python -m pytest -m "" $(PYTEST_ARGS)

# serving/protos/*_pb2.py from their .proto files (tests/serving/test_protos.py checks that they match).
protos: env
	$(VENV)/bin/python -m grpc_tools.protoc -I. --python_out=. serving/protos/*.proto
