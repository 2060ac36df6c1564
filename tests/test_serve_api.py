"""`ldnet serve` through the real server: a child process on a free port of 127.0.0.1,
reached over HTTP. Same keypoints as `PoseEstimator` for the same weights, every bad-input
case with its status and one-line message (and the server keeps serving), the API key,
the warning for a public address, and a graceful SIGTERM."""

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from helpers import SHARED, random_checkpoint

from ldnet.cli import main
from ldnet.deploy.export import export_onnx
from ldnet.inference import load_model
from ldnet.predict import HogPersonDetector, PoseEstimator, hog_available, oks_suppress
from ldnet.serve.batching import MicroBatcher, QueueFull
from ldnet.serve.process import ServerProcess

VAL2017 = SHARED / "coco-mini" / "images" / "val2017"
VAL_ANN = SHARED / "coco-mini" / "annotations" / "person_keypoints_val2017.json"
IMAGE_ID = 311002  # five person boxes, 640x427
INPUT_SIZE = (128, 96)  # small: the tests run on a loaded 2-core machine
BODY_LIMIT_MB = 0.5


def gt_boxes(image_id: int) -> list[list[float]]:
    annotations = json.loads(VAL_ANN.read_text())["annotations"]
    return [a["bbox"] for a in annotations if a["image_id"] == image_id and not a["iscrowd"]]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_checkpoint(
        tmp_path_factory.mktemp("serve") / "ldnet_s.pt", "ldnet_s", size=INPUT_SIZE
    )


@pytest.fixture(scope="module")
def server(weights):
    with ServerProcess(["--weights", weights, "--max-body-mb", BODY_LIMIT_MB]) as running:
        yield running


@pytest.fixture(scope="module")
def image_path() -> Path:
    return VAL2017 / f"{IMAGE_ID:012d}.jpg"


def keypoint_arrays(answer: dict) -> np.ndarray:
    return np.array([[[k["x"], k["y"], k["score"]] for k in p["keypoints"]] for p in answer])


def post_raw(server, data: bytes, content_type="image/jpeg", **params) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return httpx.post(
        server.url + "/v1/pose", content=data, headers=headers, params=params, timeout=60
    )


def assert_error(response: httpx.Response, status: int, fragment: str) -> None:
    """The status, and a body of exactly one one-line message without a traceback or a
    path of the server."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and fragment in body["error"], body
    message = body["error"]
    assert "\n" not in message and "Traceback" not in message
    assert "/work" not in message and ".py" not in message and "ldnet/" not in message


def assert_still_serving(server, image_path) -> None:
    answer = post_raw(server, image_path.read_bytes(), boxes="[[100, 50, 200, 300]]")
    assert answer.status_code == 200 and len(answer.json()["people"]) == 1


def test_model_description(server):
    answer = httpx.get(server.url + "/v1/model").json()
    assert answer["name"] == "ldnet_s" and answer["dataset"] == "coco"
    assert answer["joints"][:3] == ["nose", "left_eye", "right_eye"] and len(answer["joints"]) == 17
    assert [15, 13] in answer["skeleton"] and answer["input_size"] == list(INPUT_SIZE)
    assert answer["backend"] == "pytorch"
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}
    assert "/v1/pose" in httpx.get(server.url + "/openapi.json").json()["paths"]


@pytest.mark.parametrize("flip", [True, False])
def test_keypoints_match_pose_estimator_raw_and_multipart(server, weights, image_path, flip):
    boxes = gt_boxes(IMAGE_ID)
    assert len(boxes) == 5  # three with keypoints, two small ones without
    expected = PoseEstimator.from_weights(weights, flip=flip)(image_path, boxes)
    data = image_path.read_bytes()
    raw = post_raw(server, data, boxes=json.dumps(boxes), flip=str(flip).lower())
    multipart = httpx.post(
        server.url + "/v1/pose",
        files={"image": ("photo.jpg", data, "image/jpeg")},
        data={"boxes": json.dumps(boxes), "flip": str(flip).lower()},
        timeout=60,
    )
    for answer in (raw, multipart):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == "ldnet_s" and body["time_ms"] > 0
        people = body["people"]
        np.testing.assert_allclose([p["box"] for p in people], boxes, atol=1e-4)  # their order
        assert people[0]["keypoints"][0]["name"] == "nose"
        found = keypoint_arrays(people)
        np.testing.assert_allclose(found[..., :2], expected.keypoints[..., :2], atol=1e-3)
        np.testing.assert_allclose(found[..., 2], expected.keypoints[..., 2], atol=1e-5)
        np.testing.assert_allclose([p["score"] for p in people], expected.scores, atol=1e-5)


def test_without_boxes_people_are_found_as_ldnet_predict_finds_them(server, weights, image_path):
    """`ldnet predict`'s default: the HOG detector (score >= 0.3), then OKS-NMS."""
    answer = post_raw(server, image_path.read_bytes())
    assert answer.status_code == 200
    people = answer.json()["people"]
    estimator = PoseEstimator.from_weights(weights)
    image = cv2.imread(str(image_path))
    if hog_available():
        boxes, scores = HogPersonDetector()(image)
        keep = scores >= 0.3
        boxes, scores = boxes[keep], scores[keep]
    else:
        boxes, scores = None, None
    expected = oks_suppress(estimator(image, boxes, scores), estimator.keypoint_set)
    assert len(people) == len(expected)
    if len(expected):
        np.testing.assert_allclose([p["box"] for p in people], expected.boxes, atol=1e-3)
        found = keypoint_arrays(people)
        np.testing.assert_allclose(found[..., :2], expected.keypoints[..., :2], atol=1e-3)


def test_concurrent_requests_share_network_calls_and_get_their_own_people(
    server, weights, image_path
):
    """Micro-batching: six requests at once, each with its own boxes, run in fewer network
    calls than requests, and each answer holds exactly its own people."""
    boxes = np.array(gt_boxes(IMAGE_ID))
    orders = [[0], [1, 2], [3, 4], [4, 3, 2, 1, 0], [2], [0, 1, 2, 3, 4]]
    subsets = [boxes[order].tolist() for order in orders]
    # A person's keypoints do not depend on the other boxes: one reference call for all.
    everyone = PoseEstimator.from_weights(weights)(image_path, boxes).keypoints
    expected = [everyone[order] for order in orders]
    data = image_path.read_bytes()
    before = httpx.get(server.url + "/v1/stats").json()
    with ThreadPoolExecutor(len(subsets)) as pool:
        answers = list(
            pool.map(lambda subset: post_raw(server, data, boxes=json.dumps(subset)), subsets)
        )
    after = httpx.get(server.url + "/v1/stats").json()
    for answer, subset, keypoints in zip(answers, subsets, expected, strict=True):
        people = answer.json()["people"]
        np.testing.assert_allclose([p["box"] for p in people], subset, atol=1e-4)
        np.testing.assert_allclose(keypoint_arrays(people)[..., :2], keypoints[..., :2], atol=1e-3)
    assert after["requests"] - before["requests"] == len(subsets)
    assert after["batches"] - before["batches"] < len(subsets) and after["largest_batch"] > 1


def test_batcher_bounds_its_queue_and_reports_a_failed_batch():
    release = threading.Event()

    def run_batch(jobs):
        release.wait(10)
        if "bad" in jobs:
            raise RuntimeError("boom")
        return [job * 2 for job in jobs]

    batcher = MicroBatcher(run_batch, max_batch=4, max_wait_s=0.001, max_queue=2)
    first = batcher.submit(1)  # taken by the worker, which then blocks in run_batch
    time.sleep(0.2)
    queued = [batcher.submit(2), batcher.submit(3)]
    with pytest.raises(QueueFull):
        batcher.submit(4)
    release.set()
    assert first.result(10) == 2 and [f.result(10) for f in queued] == [4, 6]
    failing = batcher.submit("bad")
    with pytest.raises(RuntimeError, match="boom"):
        failing.result(10)
    assert batcher.submit(5).result(10) == 10  # the worker survives a failed batch
    batcher.close()
    assert not batcher.worker.is_alive()
    assert batcher.stats.jobs == 5 and batcher.stats.largest == 2


def png_bomb_header() -> bytes:
    """A PNG whose header claims 60000 x 60000 pixels (refused before any decoding)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(header))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def test_every_bad_input_answers_its_code_and_message(server, image_path):
    jpeg = image_path.read_bytes()
    url = server.url + "/v1/pose"
    box = json.dumps([[100, 50, 200, 300]])
    cases = [
        (lambda: post_raw(server, b"hello", "text/plain"), 415, "unsupported content type"),
        (lambda: post_raw(server, b"GIF89a....", "image/gif"), 415, "unsupported content type"),
        (lambda: post_raw(server, b"\x00" * 64, "application/octet-stream"), 415, "not a JPEG"),
        (lambda: post_raw(server, b"hello", "image/jpeg"), 400, "corrupt image"),
        (lambda: post_raw(server, jpeg[:4000], "image/jpeg"), 400, "truncated JPEG"),
        (lambda: post_raw(server, jpeg[:600] + b"\x00" * 3000 + b"\xff\xd9"), 400, "corrupt"),
        (lambda: post_raw(server, b"", "image/jpeg"), 400, "empty image"),
        (lambda: post_raw(server, png_bomb_header(), "image/png"), 413, "megapixels"),
        (
            lambda: post_raw(server, b"\xff\xd8\xff" + b"\x00" * 600_000),
            413,
            "body larger than the 524288-byte limit",
        ),
        (lambda: post_raw(server, jpeg, boxes="[[700, 10, 50, 80]]"), 422, "outside the 640x427"),
        (lambda: post_raw(server, jpeg, boxes="[[10, 10, 0, 80]]"), 422, "zero or negative size"),
        (lambda: post_raw(server, jpeg, boxes="[[10, 10, 50]]"), 400, "boxes: expected"),
        (lambda: post_raw(server, jpeg, boxes="[[1, 2"), 400, "boxes: expected JSON"),
        (lambda: post_raw(server, jpeg, boxes="[[NaN, 1, 2, 3]]"), 400, "boxes: expected JSON"),
        (lambda: post_raw(server, jpeg, boxes=""), 400, "boxes: expected JSON"),
        (lambda: post_raw(server, jpeg, boxes=box, flip="maybe"), 400, "flip: expected"),
        (lambda: post_raw(server, jpeg, boxes=box, flip="1"), 400, "flip: expected true or false"),
        (
            lambda: httpx.post(url + "?flip=true&flip=false", content=jpeg),
            400,
            "query: 'flip' given 2 times",
        ),
        (
            lambda: httpx.post(
                url, files={"image": ("a.jpg", jpeg, "image/jpeg")}, data={"boxes": [box, box]}
            ),
            400,
            "multipart body: 'boxes' given 2 times",
        ),
        (
            lambda: httpx.post(
                url, files={"image": ("a.jpg", jpeg, "image/jpeg")}, data={"flip": 0}
            ),
            400,
            "flip: expected true or false, got '0'",
        ),
        (
            lambda: httpx.post(
                url, files={"image": ("a.jpg", jpeg, "image/jpeg"), "flip": ("f", b"true")}
            ),
            400,
            "multipart body:",
        ),
        (
            lambda: httpx.post(
                url, files={"image": ("a.jpg", jpeg, "image/jpeg")}, data={"boxes": box, "x": "1"}
            ),
            400,
            "multipart body: unknown field 'x'",
        ),
        (
            lambda: httpx.post(url, files={"picture": ("a.jpg", jpeg, "image/jpeg")}),
            400,
            "no file field 'image'",
        ),
        (
            lambda: httpx.post(url, files={"image": ("a.txt", b"hi", "text/plain")}),
            415,
            "unsupported content type",
        ),
        (lambda: httpx.get(url), 405, "Method Not Allowed"),
        (lambda: httpx.get(server.url + "/v2/pose"), 404, "Not Found"),
    ]
    for send, status, fragment in cases:
        assert_error(send(), status, fragment)
    assert_still_serving(server, image_path)
    assert "Traceback" not in server.log_text()


def test_api_key_is_required_compared_and_never_logged(weights, tmp_path, image_path):
    key = "k3y-" + "x" * 28
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    with ServerProcess(["--weights", weights, "--api-key-file", key_file]) as server:
        data = image_path.read_bytes()
        for headers in ({}, {"x-api-key": key[:-1] + "y"}, {"authorization": "Basic " + key}):
            answer = httpx.get(server.url + "/v1/model", headers=headers)
            assert_error(answer, 401, "API key")
            answer = post_raw(server, data)  # no key
            assert_error(answer, 401, "missing API key")
        for headers in ({"x-api-key": key}, {"authorization": f"Bearer {key}"}):
            assert httpx.get(server.url + "/v1/model", headers=headers).status_code == 200
        answer = httpx.post(
            server.url + "/v1/pose",
            content=data,
            params={"boxes": "[[100, 50, 200, 300]]"},
            headers={"content-type": "image/jpeg", "x-api-key": key},
            timeout=60,
        )
        assert answer.status_code == 200 and len(answer.json()["people"]) == 1
        for probe in ("/healthz", "/readyz"):  # a load balancer's probes carry no key
            assert httpx.get(server.url + probe).status_code == 200
        log = server.log_text()
    assert key not in log and key[:-1] not in log and "401" in log


def test_public_address_without_a_key_warns(tmp_path, capsys):
    code = main(["serve", "--weights", str(tmp_path / "none.pt"), "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0 without --api-key-file" in err
    assert code == 2 and "none.pt" in err.splitlines()[-1]


def test_short_or_missing_key_file_is_refused(weights, tmp_path, capsys):
    (tmp_path / "short").write_text("abc\n")
    for name, fragment in (("short", "at least 16 characters"), ("absent", "no such API key")):
        code = main(["serve", "--weights", str(weights), "--api-key-file", str(tmp_path / name)])
        assert code == 2 and fragment in capsys.readouterr().err


def test_sigterm_answers_the_request_in_flight_and_refuses_new_ones(weights, image_path):
    boxes = json.dumps([[20.0 + i, 30.0, 200.0, 300.0] for i in range(120)])  # ~3 s here
    server = ServerProcess(["--weights", weights]).start()
    answers = {}

    def slow_request():
        answers["slow"] = post_raw(server, image_path.read_bytes(), boxes=boxes)

    client = threading.Thread(target=slow_request)
    client.start()
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "/v1/stats").json()["in_flight"] == 0:
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.02)
    assert client.is_alive(), "the request finished before SIGTERM; make it slower"
    server.terminate()
    time.sleep(0.3)
    with pytest.raises(httpx.TransportError):  # no longer listening
        httpx.get(server.url + "/healthz", timeout=5)
    client.join(60)
    assert answers["slow"].status_code == 200 and len(answers["slow"].json()["people"]) == 120
    # uvicorn re-raises the signal once it has shut down cleanly: the exit is by SIGTERM
    # (-15), not an abort (-6) or an error code.
    assert server.process.wait(60) in (0, -signal.SIGTERM)
    assert "Traceback" not in server.log_text() and "terminate called" not in server.log_text()
    server.log_path.unlink()


@pytest.mark.slow
def test_onnx_weights_with_the_onnxruntime_backend(weights, image_path, tmp_path):
    model, record = load_model(weights)
    onnx_path = export_onnx(
        model, tmp_path / "ldnet_s.onnx", INPUT_SIZE, metadata=record.to_metadata()
    )
    boxes = gt_boxes(IMAGE_ID)
    same_file = PoseEstimator.from_weights(onnx_path)(image_path, boxes)
    pytorch = PoseEstimator.from_weights(weights)(image_path, boxes)
    with ServerProcess(["--weights", onnx_path, "--backend", "onnxruntime"]) as server:
        assert httpx.get(server.url + "/v1/model").json()["backend"] == "onnxruntime"
        answer = post_raw(server, image_path.read_bytes(), boxes=json.dumps(boxes))
    assert answer.status_code == 200
    found = keypoint_arrays(answer.json()["people"])[..., :2]
    np.testing.assert_allclose(found, same_file.keypoints[..., :2], atol=1e-3)
    np.testing.assert_allclose(found, pytorch.keypoints[..., :2], atol=1e-2)
