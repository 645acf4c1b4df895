"""Every served request has an id: the client's own (`X-Request-Id` header over REST, `x-request-id`
metadata over gRPC) when it is a valid one, else a new one. The server returns it (response header,
gRPC trailing metadata) and logs it with the request, so that a label that arrives later
(`tfxline feedback ingest`) can be joined to what the model answered."""
import contextvars
import re
import uuid
from typing import Optional

HEADER = "X-Request-Id"
METADATA = "x-request-id"
# What a client may send: printable, no spaces or separators that CSV or JSON would have to quote.
VALID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

# The id of the request being answered, set by the REST and gRPC handlers; the request log reads it in the
# same task (asyncio copies the context into every task, so batching and the model thread pool do not mix it up).
current: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def choose(sent: Optional[str]) -> str:
    """The client's id if it is valid, else a new random one (32 hex digits)."""
    if sent is not None and VALID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex
