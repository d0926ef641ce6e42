"""The one way a virtual backend says no: an HTTP status and a JSON body naming the field."""

from __future__ import annotations

from typing import Any

from mockstore.exchange import Response


class HttpError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers=None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = list(headers or [])
        self.extra = extra

    def response(self) -> Response:
        body: dict[str, Any] = {"error": self.message, "status": self.status}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return Response.make_json(self.status, body, self.headers)
