"""The API's one error shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cloud_api.jsonout import json_response


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}
        self.headers = headers or {}

    def response(self, request_id: str) -> web.Response:
        body = {"error": {"code": self.code, "message": self.message, "details": self.details}}
        return json_response(
            body,
            status=self.status,
            headers={**self.headers, "X-Request-Id": request_id},
        )


UNAUTHORIZED = ApiError(401, "unauthorized", "missing or wrong credentials")
