"""API errors, answered as Consul does: plain-text bodies with the matching status."""

from __future__ import annotations


class ApiError(Exception):
    """Raised anywhere in a handler; the error middleware turns it into a response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)
