"""What /docs says: the app's description, the documented error responses of each route, and
Swagger UI and ReDoc served from this process (their assets come from the fastapi-offline wheel,
so the docs work on a network without a CDN).

Swagger UI 5 is needed for FastAPI's OpenAPI 3.1 documents (4.x refuses to render them), which is
why the assets come from fastapi-offline (Swagger UI 5) rather than swagger-ui-bundle (4.15).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

DOCS_ASSETS_URL = "/docs/assets"
PROTOCOL_URL = "/docs/protocol"
# The repository's copy (a checkout), else the working dir's (the image copies docs/ into its WORKDIR).
PROTOCOL_FILES = (
    Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md",
    Path("docs") / "PROTOCOL.md",
)

DESCRIPTION = f"""\
Parley's HTTP API: registration, login, token refresh, and the operations endpoints.

**Most of the protocol is not HTTP but Socket.IO**, which OpenAPI cannot describe: connect to the
same origin, path `/socket.io`, with `auth={{"token": <access_token>}}` (from `POST /auth/login`), and
emit events such as `conversation:create`, `message:send` or `message:history`, each with an ack
callback. Every event, its payload, its ack, the error codes and the server pushes are in the full
client protocol: [{PROTOCOL_URL}]({PROTOCOL_URL}) (`docs/PROTOCOL.md` in the repository).

Every response carries an `X-Correlation-ID` header (a valid one sent by the client is kept).
"""


class ErrorDetail(BaseModel):
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class ValidationFailure(BaseModel):
    """A 422 body: FastAPI's, less the rejected value (``input``) of each error."""

    detail: list[ValidationIssue]


class TooManyRequests(BaseModel):
    detail: str = "too many requests"
    retry_after: int


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]  # name -> "ok" or why not, in words


class Health(BaseModel):
    status: str = "ok"


Responses = dict[int | str, dict[str, Any]]

TOO_MANY: Responses = {
    429: {
        "model": TooManyRequests,
        "description": "Over a rate limit: retry after `Retry-After` seconds (see the protocol's Rate limits).",
        "headers": {
            "Retry-After": {
                "description": "Whole seconds, at least 1, until the same call would be allowed.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }
}
UNAVAILABLE: Responses = {
    503: {
        "model": ErrorDetail,
        "description": "A dependency (Kafka, MongoDB, Redis) is down or did not answer in time.",
    }
}
INVALID: Responses = {
    422: {
        "model": ValidationFailure,
        "description": "Invalid input: FastAPI's list of errors, never echoing the rejected value "
        "(no `input` member: it may be a password or a token).",
    }
}
UNAUTHORIZED: Responses = {
    401: {
        "model": ErrorDetail,
        "description": "Wrong credentials or token; the response has `WWW-Authenticate: Bearer`.",
    }
}
CONFLICT: Responses = {
    409: {"model": ErrorDetail, "description": "The username is taken (compared after normalisation)."}
}
REGISTER_RESPONSES: Responses = {**CONFLICT, **INVALID, **TOO_MANY, **UNAVAILABLE}
TOKEN_RESPONSES: Responses = {**UNAUTHORIZED, **INVALID, **TOO_MANY, **UNAVAILABLE}
READY_RESPONSES: Responses = {
    200: {"model": Readiness, "description": "Every dependency and at least one worker are ready."},
    503: {"model": Readiness, "description": "Not ready: `checks` says which and why, in words."},
}


def metrics_responses(media_type: str) -> Responses:
    return {
        200: {
            "description": "Prometheus text exposition format.",
            "content": {media_type: {"schema": {"type": "string"}}},
        }
    }


def docs_assets() -> Path:
    """Swagger UI's and ReDoc's files, as the fastapi-offline wheel ships them."""
    return Path(str(files("fastapi_offline") / "static"))


def mount_docs(app: FastAPI) -> None:
    """/docs (Swagger UI), /redoc and /docs/protocol, all from this process.

    The app must be made with ``docs_url=None, redoc_url=None`` (FastAPI's own pages load a CDN).
    """
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title}: Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title}: ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(PROTOCOL_URL, include_in_schema=False)
    async def protocol() -> Response:
        for path in PROTOCOL_FILES:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
        # An installation without the repository's docs/.
        return PlainTextResponse(
            "docs/PROTOCOL.md is not installed with this gateway: read it in the repository.\n", status_code=404
        )
