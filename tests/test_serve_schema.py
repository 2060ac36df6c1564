"""`ldnet serve` keeps the contract its OpenAPI schema states: schemathesis, with all its checks,
against the real server (a child process on 127.0.0.1). Every status answered is documented
with its body's schema, what the schema allows is served, and what it forbids is refused with
a 4xx; the fuzzing is bounded in examples (and so in time) and seeded, so CI sees the same run."""

from pathlib import Path

import cv2
import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from test_predict import make_checkpoint

from ldnet.serve.app import create_app
from ldnet.serve.contract import IMAGE_TYPES, RAW_BODY_TYPES
from ldnet.serve.images import BOXES_PATTERN
from ldnet.serve.process import ServerProcess

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE = SHARED / "coco-mini" / "images" / "val2017" / "000000311002.jpg"
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/bmp": ".bmp"}
# Per operation and phase that draws at random; the coverage phase adds the cases the
# schema spells out (each bound, each missing field). About 40 s in all on a loaded 2-core box.
MAX_EXAMPLES = 30
CONFIG = {
    "seed": 21,
    "generation": {"max-examples": MAX_EXAMPLES},
    "checks": {
        # Schema-valid requests get 200, or 422 for boxes that are well formed but have no
        # pixel in this image: a relation between two inputs that JSON schema cannot state.
        # A 400 here would be the server refusing what its schema allows.
        "positive_data_acceptance": {"expected-statuses": ["200", "422"]},
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    weights = make_checkpoint(
        tmp_path_factory.mktemp("schema") / "ldnet_s.pt", "ldnet_s", size=(128, 96)
    )
    with ServerProcess(["--weights", weights]) as running:
        yield running


def small_images() -> dict[str, bytes]:
    """The COCO image at 64x43 in each format the server reads."""
    image = cv2.resize(cv2.imread(str(IMAGE)), (64, 43), interpolation=cv2.INTER_AREA)
    encoded = {}
    for media_type, extension in EXTENSIONS.items():
        ok, data = cv2.imencode(extension, image)
        assert ok, media_type
        encoded[media_type] = data.tobytes()
    return encoded


def teach_image_types() -> None:
    """Positive cases send a real image of the type they name (schemathesis's own samples are
    1x1 and it has none for BMP); octet-stream may be any of them, the bytes decide."""
    images = small_images()
    assert set(images) == set(IMAGE_TYPES)
    for media_type in RAW_BODY_TYPES:
        samples = [images[media_type]] if media_type in images else list(images.values())
        schemathesis.openapi.media_type(media_type, st.sampled_from(samples))


# The document the server serves, built from the same code without a model (the routes'
# service is only reached per request); test_the_server_serves_this_document holds that.
DOCUMENT = create_app(service=None).openapi()
teach_image_types()
contract = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(CONFIG))


def test_the_server_serves_this_document(server):
    assert httpx.get(server.url + "/openapi.json").json() == DOCUMENT


def test_the_schema_states_the_formats_the_server_checks(server):
    operation = httpx.get(server.url + "/openapi.json").json()["paths"]["/v1/pose"]["post"]
    query = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert query["boxes"] == {"type": "string", "pattern": BOXES_PATTERN}
    assert query["flip"] == {"type": "boolean", "default": True}
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["boxes"] == query["boxes"] and form["additionalProperties"] is False
    assert sorted(operation["responses"]) == ["200", "400", "401", "413", "415", "422", "503"]


@contract.parametrize()
def test_the_live_server_keeps_its_openapi_contract(case, server):
    # No `checks=`: every built-in check the configuration enables, which is all of them.
    case.call_and_validate(base_url=server.url, timeout=60)
