"""The OpenAPI contract of ``ldnet serve``: every status each route answers with its body's JSON
schema, and the request formats of ``POST /v1/pose`` as JSON schema.

The formats of ``boxes`` and ``flip`` are the constants the server checks them with
(``images.BOXES_PATTERN``, ``images.FLIP_VALUES``), so the description cannot drift from the
checks; ``tests/test_serve_schema.py`` runs schemathesis against the live server to hold both.
"""

from __future__ import annotations

from .images import BOXES_FORMAT, BOXES_PATTERN, FORMATS

ERROR_BODY = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one line, no traceback"}},
    "additionalProperties": False,
}
BOXES_SCHEMA = {"type": "string", "pattern": BOXES_PATTERN}
# OpenAPI writes a boolean as true or false in a query or a form field: FLIP_VALUES' words.
FLIP_SCHEMA = {"type": "boolean", "default": True}
IMAGE_TYPES = list(FORMATS)
# The raw body may also say nothing of its format: the bytes decide (images.UNTYPED).
RAW_BODY_TYPES = [*IMAGE_TYPES, "application/octet-stream"]


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _error(description: str, headers: dict | None = None) -> dict:
    return _json(ERROR_BODY, description, headers)


RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds; sent when the server is full or warming up",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
UNAUTHORIZED = _error(
    "missing or wrong API key (only when the server runs with --api-key-file)",
    {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
)
TOO_LARGE = _error("request body over --max-body-mb (answered while it arrives)")
SHUTTING_DOWN = _error("shutting down", RETRY_AFTER)


def _object(properties: dict) -> dict:
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }


NUMBER, COUNT = {"type": "number"}, {"type": "integer", "minimum": 0}
KEYPOINT = _object({"name": {"type": "string"}, "x": NUMBER, "y": NUMBER, "score": NUMBER})
PERSON = _object(
    {
        "box": {"type": "array", "items": NUMBER, "minItems": 4, "maxItems": 4},
        "score": NUMBER,
        "keypoints": {"type": "array", "items": KEYPOINT},
    }
)
POSE_ANSWER = _object(
    {
        "people": {"type": "array", "items": PERSON},
        "model": {"type": "string"},
        "time_ms": {"type": "number", "minimum": 0},
    }
)
PAIR = {"type": "array", "items": COUNT, "minItems": 2, "maxItems": 2}
MODEL_ANSWER = _object(
    {
        "name": {"type": "string"},
        "dataset": {"type": "string"},
        "joints": {"type": "array", "items": {"type": "string"}},
        "skeleton": {"type": "array", "items": PAIR},
        "input_size": PAIR,
        "backend": {"type": "string"},
    }
)
STATS_ANSWER = _object(
    {name: COUNT for name in ("requests", "batches", "largest_batch", "refused", "in_flight")}
)


def _status(word: str) -> dict:
    return _object({"status": {"type": "string", "const": word}})


# Responses per route. Every route is behind the guard: a body over the limit is 413 on any of
# them, and all but /healthz answer 503 once shutdown has begun; /healthz and /readyz are open
# without the API key.
HEALTHZ_RESPONSES = {200: _json(_status("ok"), "the process answers"), 413: TOO_LARGE}
READYZ_RESPONSES = {
    200: _json(_status("ready"), "model loaded and warmed up"),
    413: TOO_LARGE,
    503: _error("warming up (with Retry-After) or shutting down", RETRY_AFTER),
}
MODEL_RESPONSES = {
    200: _json(MODEL_ANSWER, "the model"),
    401: UNAUTHORIZED,
    413: TOO_LARGE,
    503: SHUTTING_DOWN,
}
STATS_RESPONSES = {
    200: _json(STATS_ANSWER, "counters since the start"),
    401: UNAUTHORIZED,
    413: TOO_LARGE,
    503: SHUTTING_DOWN,
}
POSE_RESPONSES = {
    200: _json(POSE_ANSWER, "the people, in the order of the given boxes"),
    400: _error(
        "corrupt, truncated or empty image; boxes or flip not in their format; multipart "
        "without a file field image, or with a field it does not take"
    ),
    401: UNAUTHORIZED,
    413: _error("request body over --max-body-mb, or an image header over 50 megapixels"),
    415: _error(f"not an image the server reads ({', '.join(IMAGE_TYPES)})"),
    422: _error("a box with no pixel in the image, of zero or negative size, or not finite"),
    503: _error("server busy (Retry-After) or shutting down", RETRY_AFTER),
}

POSE_PARAMETERS = [
    {
        "name": "boxes",
        "in": "query",
        "required": False,
        "description": f"{BOXES_FORMAT}; absent: the server finds people (multipart: the form "
        "field wins)",
        "schema": BOXES_SCHEMA,
    },
    {
        "name": "flip",
        "in": "query",
        "required": False,
        "description": "flip test: true or false (multipart: the form field wins)",
        "schema": FLIP_SCHEMA,
    },
]
BINARY = {"type": "string", "format": "binary"}
MULTIPART_FIELDS = ("image", "boxes", "flip")
POSE_REQUEST_BODY = {
    "required": True,
    "content": {
        **{media_type: {"schema": BINARY} for media_type in RAW_BODY_TYPES},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {"image": BINARY, "boxes": BOXES_SCHEMA, "flip": FLIP_SCHEMA},
                "additionalProperties": False,
            },
            "encoding": {"image": {"contentType": ", ".join(IMAGE_TYPES)}},
        },
    },
}
POSE_OPENAPI = {"parameters": POSE_PARAMETERS, "requestBody": POSE_REQUEST_BODY}
