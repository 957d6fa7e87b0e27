"""Domain errors. Each carries its gRPC status code; one interceptor translates them.

Domain code raises these; servicers never catch them. Anything else that escapes a
handler becomes INTERNAL with a generic message (the traceback goes to the log).
"""

from __future__ import annotations

import grpc


class StableQueueError(Exception):
    """Base of all errors whose message is safe to show to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(StableQueueError):
    """A request field breaks a rule. The message names the field and the rule."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class NotFound(StableQueueError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(StableQueueError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(StableQueueError):
    """The request is well formed but the object's state does not allow it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(StableQueueError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(StableQueueError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(StableQueueError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class BackendUnavailable(StableQueueError):
    """A backend could not be reached; the caller may retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class NotActive(StableQueueError):
    """This coordinator is a standby, or was the active one and another took over."""

    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(StableQueueError):
    """The contract has the call but this coordinator does not serve it yet."""

    code = grpc.StatusCode.UNIMPLEMENTED


class BackendRejected(StableQueueError):
    """The backend refused the request itself (4xx, validation): retrying cannot help."""

    code = grpc.StatusCode.FAILED_PRECONDITION
