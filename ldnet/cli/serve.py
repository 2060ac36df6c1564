"""`ldnet serve --weights W`: the HTTP pose service (``ldnet.serve``)."""

from __future__ import annotations

import sys
from pathlib import Path

from ldnet.datasets import DATASETS
from ldnet.errors import require_extra
from ldnet.inference.backends import BACKENDS

from .common import CLIError, positive_int
from .people_options import add_detector_options, announce_fetches
from .people_options import person_finder as detector_finder

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="HTTP pose service with a browser page",
        description=(
            "Serve POST /v1/pose (image -> people with keypoints), GET /v1/model, /healthz, "
            "/readyz, the API documentation at /docs and a page at /. Concurrent requests are "
            "gathered for up to --max-wait-ms into one network batch. Without boxes in a "
            "request, people are found as `ldnet predict` finds them."
        ),
    )
    parser.add_argument(
        "--weights",
        required=True,
        help="checkpoint (.pt), `ldnet export` .onnx, or a known weights name",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=BACKENDS, default="pytorch")
    parser.add_argument(
        "--dataset", choices=list(DATASETS), help="the joint set expected; others are refused"
    )
    parser.add_argument(
        "--max-batch", type=positive_int, default=8, help="images per network call (8; 1: off)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="at most this long a batch waits for requests already on their way (5)",
    )
    parser.add_argument(
        "--max-queue",
        type=positive_int,
        default=32,
        help="requests waiting for the network; beyond, 503 + Retry-After (32)",
    )
    parser.add_argument(
        "--max-body-mb", type=float, default=10.0, help="request body limit in MiB (10)"
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="FILE",
        help="every request must carry this key (Authorization: Bearer KEY or X-API-Key)",
    )
    people = parser.add_argument_group("people, when a request gives no boxes")
    add_detector_options(people)
    people.add_argument("--whole-image", action="store_true", help="the whole image is one person")
    parser.add_argument("--threads", type=positive_int, help="intra-op threads of the network")
    parser.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug"], default="info"
    )
    parser.set_defaults(run=run)


def person_finder(args):
    """What finds people in a request without boxes: the same choice as `ldnet predict`."""
    if args.whole_image:
        return lambda image: None
    detect = detector_finder(args, threads=args.threads)
    return detect if detect is not None else (lambda image: None)


def run(args) -> int:
    require_extra("serve", "ldnet serve")
    import torch

    from ldnet.lineage.download import resolve_weights
    from ldnet.predict import PoseEstimator
    from ldnet.serve import PoseService, ServeOptions, create_app
    from ldnet.serve.auth import read_api_key
    from ldnet.serve.server import run_server

    if not 0 < args.port < 65536:
        raise CLIError(f"--port {args.port}: expected 1..65535")
    if args.max_body_mb <= 0 or args.max_wait_ms < 0:
        raise CLIError("--max-body-mb must be positive and --max-wait-ms not negative")
    api_key = read_api_key(args.api_key_file) if args.api_key_file else None
    if args.host not in LOCAL_HOSTS and api_key is None:
        print(
            f"warning: serving on {args.host} without --api-key-file: anyone who can reach "
            "this address can use the service",
            file=sys.stderr,
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    announce_fetches(args.weights, args.detector, uses_detector=not args.whole_image)
    weights = resolve_weights(args.weights)  # a path, or a known name fetched once
    estimator = PoseEstimator.from_weights(
        weights, backend=args.backend, dataset=args.dataset, threads=args.threads
    )
    service = PoseService(estimator, person_finder(args))
    options = ServeOptions(
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        api_key=api_key,
    )
    app = create_app(service, options)
    print(
        f"ldnet serve: {service.name} ({estimator.record.dataset}, "
        f"{'x'.join(map(str, estimator.input_size))}, {estimator.backend.name}) on "
        f"http://{args.host}:{args.port}  max batch {args.max_batch}, queue {args.max_queue}"
        + (", API key required" if api_key else ""),
        file=sys.stderr,
    )
    run_server(app, args.host, args.port, log_level=args.log_level)
    return 0
