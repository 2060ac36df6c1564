"""`ldnet serve` keeps the contract its OpenAPI schema states: schemathesis, with all its checks,
against the real server (a child process on 127.0.0.1). Every status answered is documented
with its body's schema, what the schema allows is served, and what it forbids is refused with
a 4xx; the fuzzing is bounded in examples (and so in time) and seeded, so CI sees the same run."""

from pathlib import Path

import httpx
import pytest
import schemathesis
from helpers import random_checkpoint
from schemathesis.checks import CHECKS, load_all_checks

from ldnet.serve.app import create_app
from ldnet.serve.contract import IMAGE_TYPES
from ldnet.serve.images import BOXES_PATTERN, decode_image
from ldnet.serve.process import ServerProcess
from ldnet.serve.schemathesis_hooks import sample_images

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    weights = random_checkpoint(
        tmp_path_factory.mktemp("schema") / "ldnet_s.pt", "ldnet_s", size=(128, 96)
    )
    with ServerProcess(["--weights", weights]) as running:
        yield running


# The document the server serves, built from the same code without a model (the routes'
# service is only reached per request); test_the_server_serves_this_document holds that.
DOCUMENT = create_app(service=None).openapi()
# The file `schemathesis run` reads from the repository: its bounds, seed, hooks and the
# statuses a schema-valid request may get.
CONFIG = schemathesis.Config.from_path(ROOT / "schemathesis.toml")
contract = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
load_all_checks()
ALL_CHECKS = CHECKS.get_all()


def test_the_server_serves_this_document(server):
    assert httpx.get(server.url + "/openapi.json").json() == DOCUMENT


def test_the_schema_states_the_formats_the_server_checks():
    operation = DOCUMENT["paths"]["/v1/pose"]["post"]
    query = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert query["boxes"] == {"type": "string", "pattern": BOXES_PATTERN}
    assert query["flip"] == {"type": "boolean", "default": True}
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["boxes"] == query["boxes"] and form["additionalProperties"] is False
    assert sorted(operation["responses"]) == ["200", "400", "401", "413", "415", "422", "503"]


def test_the_fuzzer_gets_a_real_image_of_each_type_the_schema_names():
    samples = sample_images()
    assert sorted(samples) == sorted(IMAGE_TYPES)
    for media_type, datas in samples.items():
        for data in datas:
            assert decode_image(data, media_type).shape[2] == 3


@contract.parametrize()
def test_the_live_server_keeps_its_openapi_contract(case, server):
    case.call_and_validate(base_url=server.url, checks=ALL_CHECKS, timeout=60)


def test_all_checks_are_the_fourteen_of_schemathesis_4():
    names = {check.__name__ for check in ALL_CHECKS}
    assert {"not_a_server_error", "status_code_conformance", "negative_data_rejection"} <= names
    assert {"positive_data_acceptance", "response_schema_conformance", "ignored_auth"} <= names
    assert len(names) == 14
