"""The FastAPI application: routes, the JSON error form, and the guard in front of them.

Every answer that is not a success is ``{"error": "<one line>"}`` with its status code; a
traceback or a server path never reaches the client (unexpected failures are logged here and
answered "internal error"). The guard, a plain ASGI layer outside FastAPI, refuses before any
work is done: a missing or wrong API key (401), a body over the limit (413, counted while it
arrives, so a missing or false Content-Length does not get past it; answered at once, then the
rest of the body is drained within bounds before the close, see ``linger``), too many requests
in flight (503 + Retry-After), and everything but liveness once shutdown has begun.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from .auth import OPEN_PATHS, ApiKeyError, check_api_key
from .batching import MicroBatcher, QueueFull
from .contract import (
    HEALTHZ_RESPONSES,
    MODEL_RESPONSES,
    MULTIPART_FIELDS,
    POSE_OPENAPI,
    POSE_RESPONSES,
    READYZ_RESPONSES,
    STATS_RESPONSES,
)
from .errors import ServeError, one_line
from .images import check_boxes_format, decode_image, parse_boxes, parse_flip
from .linger import DRAIN_MAX_BYTES, answer_then_drain
from .service import PoseService

log = logging.getLogger("ldnet.serve")
RETRY_AFTER_S = 1
PAGE_MISSING = "ldnet serve: the page is not installed; the API is documented at /docs\n"


@dataclass
class ServeOptions:
    max_batch: int = 8  # requests (images) per network call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_queue: int = 32  # requests waiting for the network; more are answered 503
    max_body_bytes: int = 10 * 1024 * 1024
    api_key: bytes | None = None


def error_response(message: str, status: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: API key, body size, in-flight bound and shutdown, before the app."""

    def __init__(self, app, state: ServeState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(path, headers)
        if refusal is not None:
            return await refusal(scope, receive, send)
        limit = self.state.options.max_body_bytes
        declared = int(headers.get("content-length") or 0)
        if declared > limit:
            # A client that announced more than the server drops is cut off without reading.
            return await self._too_large(receive, send, drain=declared <= DRAIN_MAX_BYTES)
        received, body_ended = 0, False

        async def counting_receive():
            nonlocal received, body_ended
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_ended = not message.get("more_body", False)
                if received > limit:
                    raise BodyTooLarge
            return message

        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        is_pose = path.startswith("/v1/pose")
        if is_pose:
            self.state.in_flight += 1
        too_large = False
        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            too_large = not started
        finally:
            if is_pose:
                self.state.in_flight -= 1
        # Outside the in-flight count: a client draining slowly must not hold a place of
        # the requests the network is serving.
        if too_large:
            await self._too_large(receive, send, drain=not body_ended)

    def _refusal(self, path: str, headers: dict):
        state = self.state
        if state.draining and path != "/healthz":
            return error_response("shutting down", 503, {"Connection": "close"})
        if state.options.api_key is not None and path not in OPEN_PATHS:
            try:
                check_api_key(state.options.api_key, headers)
            except ApiKeyError as error:
                return error_response(str(error), error.status, error.headers)
        if path.startswith("/v1/pose") and state.in_flight >= state.max_in_flight:
            state.refused += 1
            return error_response(
                "server busy; retry later", 503, {"Retry-After": str(RETRY_AFTER_S)}
            )
        return None

    async def _too_large(self, receive, send, drain: bool):
        """413, answered before the rest of the body is read and dropped (see ``linger``),
        then the connection is closed."""
        limit = self.state.options.max_body_bytes
        response = error_response(
            f"body larger than the {limit}-byte limit", 413, {"Connection": "close"}
        )
        await answer_then_drain(response, receive, send, drain=drain)


class ServeState:
    """What the routes and the guard share: the service, its batcher, and the flags."""

    def __init__(self, service: PoseService, options: ServeOptions):
        self.service, self.options = service, options
        self.batcher: MicroBatcher | None = None
        self.warming: threading.Thread | None = None
        self.ready = threading.Event()
        self.draining = False
        self.in_flight = 0
        # Requests past the queue bound wait in the decode threads; this caps those too.
        self.max_in_flight = options.max_queue + options.max_batch
        self.refused = 0
        self.preparing = 0  # requests decoding and cropping: the batcher waits for these

    def start(self) -> None:
        options = self.options
        self.batcher = MicroBatcher(
            self.service.run_batch,
            max_batch=options.max_batch,
            max_wait_s=options.max_wait_ms / 1000,
            max_queue=options.max_queue,
            coming=lambda: self.preparing,
        )

        def warm_up():
            self.service.warm_up()
            self.ready.set()

        self.warming = threading.Thread(target=warm_up, name="ldnet-warm-up", daemon=True)
        self.warming.start()

    def stop(self) -> None:
        # A process that exits while a thread is inside the network aborts ("terminate
        # called without an active exception"): let the warm-up finish first.
        if self.warming is not None:
            self.warming.join()
        if self.batcher is not None:
            self.batcher.close()


def create_app(service: PoseService, options: ServeOptions | None = None) -> FastAPI:
    """The service's ASGI app; ``app.state.serve`` holds its ``ServeState``."""
    state = ServeState(service, options or ServeOptions())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        yield
        # Runs after uvicorn has answered the requests in flight: the batcher drains last.
        await asyncio.to_thread(state.stop)

    app = FastAPI(
        title="ldnet pose service",
        version="1",
        description=(
            "Top-down 2D human pose estimation. Send an image (raw body with its content "
            "type, or multipart field `image`) and optional person boxes; get keypoints in "
            "image pixels."
        ),
        lifespan=lifespan,
    )
    app.state.serve = state

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, error: ServeError):
        return error_response(str(error), error.status, error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return error_response(f"{where or 'request'}: {first.get('msg', 'invalid')}", 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return error_response(str(error.detail), error.status_code, error.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.error("internal error on %s", request.url.path, exc_info=error)
        return error_response("internal error", 500)

    @app.get("/", include_in_schema=False)
    async def page():
        try:
            text = resources.files("ldnet.serve").joinpath("static/index.html").read_text()
        except (FileNotFoundError, OSError):
            return HTMLResponse(PAGE_MISSING, media_type="text/plain")
        return HTMLResponse(text)

    @app.get("/healthz", summary="Liveness: the process answers", responses=HEALTHZ_RESPONSES)
    async def healthz():
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: model loaded and warmed up, not shutting down",
        responses=READYZ_RESPONSES,
    )
    async def readyz():
        if state.draining:
            return error_response("shutting down", 503)
        if not state.ready.is_set():
            return error_response("warming up", 503, {"Retry-After": str(RETRY_AFTER_S)})
        return {"status": "ready"}

    @app.get(
        "/v1/model",
        summary="The model: name, joints, skeleton, input size, backend",
        responses=MODEL_RESPONSES,
    )
    async def model():
        return service.describe()

    @app.get(
        "/v1/stats",
        summary="Counters: requests, network calls, refusals",
        responses=STATS_RESPONSES,
    )
    async def stats():
        counts = state.batcher.stats
        return {
            "requests": counts.jobs,  # through the network; those without people are not
            "batches": counts.batches,
            "largest_batch": counts.largest,
            "refused": state.refused,
            "in_flight": state.in_flight,
        }

    @app.post(
        "/v1/pose",
        summary="Keypoints of the people in an image",
        responses=POSE_RESPONSES,
        openapi_extra=POSE_OPENAPI,  # its query parameters and bodies, read by hand below
    )
    async def pose(request: Request):
        start = time.perf_counter()
        query = request.query_params
        boxes, flip = _once(query, "boxes", "query"), _once(query, "flip", "query")
        # Each parameter keeps its documented format even where a form field overrides it.
        check_boxes_format(boxes)
        flip_test = parse_flip(flip)
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/form-data"):
            data, image_type, form_boxes, form_flip = await _multipart(request)
            boxes = boxes if form_boxes is None else form_boxes
            flip_test = flip_test if form_flip is None else parse_flip(form_flip)
        else:
            data, image_type = await request.body(), content_type
        state.preparing += 1
        try:
            image = await run_in_threadpool(decode_image, data, image_type)
            del data
            box_array = parse_boxes(boxes, image.shape)
            job = await run_in_threadpool(service.prepare, image, box_array, flip_test)
        finally:
            state.preparing -= 1
        if len(job.crops) == 0:
            poses = service.run_batch([job])[0]
        else:
            try:
                poses = await state.batcher.run(job)
            except QueueFull:
                state.refused += 1
                raise ServeError(
                    "server busy; retry later", 503, {"Retry-After": str(RETRY_AFTER_S)}
                ) from None
        return {
            "people": service.people_json(poses),
            "model": service.name,
            "time_ms": round((time.perf_counter() - start) * 1000, 2),
        }

    app.add_middleware(Guard, state=state)
    return app


async def _multipart(request: Request):
    """The image bytes, its content type, and the form's boxes and flip (None if absent)."""
    try:
        form = await request.form(max_files=1, max_fields=8)
    except BodyTooLarge:
        raise
    except Exception as error:  # multipart's own parse errors
        raise ServeError(f"multipart body: {one_line(error)}", 400) from None
    upload = _once(form, "image", "multipart body")
    if not isinstance(upload, UploadFile):
        raise ServeError("multipart body: no file field 'image'", 400)
    unknown = sorted(set(form.keys()) - set(MULTIPART_FIELDS))
    if unknown:
        raise ServeError(f"multipart body: unknown field {unknown[0][:40]!r}", 400)
    data = await upload.read()
    return (
        data,
        upload.content_type or "",
        _text_field(form, "boxes"),
        _text_field(form, "flip"),
    )


def _once(values, name: str, where: str):
    """The one value of ``name`` in a query or form (a multi-dict), or None; given more than
    once, it is refused: which of them would count is nowhere written."""
    given = values.getlist(name)
    if len(given) > 1:
        raise ServeError(f"{where}: {name!r} given {len(given)} times; send it once", 400)
    return given[0] if given else None


def _text_field(form, name: str) -> str | None:
    """A form field that must be text (not a file); None if the form lacks it."""
    value = _once(form, name, "multipart body")
    if value is not None and not isinstance(value, str):
        raise ServeError(f"multipart body: field {name!r} must be text, not a file", 400)
    return value
