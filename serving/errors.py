"""Errors with TF Serving's canonical codes, so REST and gRPC report them as TF Serving does."""

# Canonical code -> HTTP status (TF Serving's model_servers/http_server.cc).
HTTP_STATUS = {
    "OK": 200,
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409, "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499,
    "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}


class ServingError(Exception):
    """A request that cannot be answered; `code` is a canonical status name such as NOT_FOUND."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def servable_not_found(name: str, version=None) -> ServingError:
    request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
    return ServingError("NOT_FOUND", f"Servable not found for request: {request}")
