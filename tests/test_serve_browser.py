"""The `ldnet serve` page in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
against the real server: an uploaded COCO-MINI image gets its skeletons drawn (the people the
API finds, the side colours at the API's keypoints), a server error is shown from its JSON, and
the live camera mode (Chromium's fake camera playing a PoseTrack clip) receives and draws
frames with never more than one request in flight."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import torch
from helpers import SHARED

VAL2017 = SHARED / "coco-mini" / "images" / "val2017"
VAL_ANN = SHARED / "coco-mini" / "annotations" / "person_keypoints_val2017.json"
VIDEO = SHARED / "samples" / "video" / "posetrack18_000001.mp4"
IMAGE_ID = 183709  # 480x640, four people with keypoints
API_KEY = "browser-test-key-0123456789"  # the server requires it: the page must send it

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMEDRIVER is None and Path("/usr/bin/chromedriver").exists():
    CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs a system Chromium and its driver: Debian packages `chromium` and "
        "`chromium-driver` (apt-get install chromium chromium-driver)",
    ),
]

KEY_HEADER = {"X-API-Key": API_KEY}

# The page's side colours (ldnet/serve/static/index.html, SIDE_COLOURS), as RGB.
SIDE_RGB = {"left": (0, 200, 0), "right": (255, 140, 0), "centre": (0, 80, 255)}

# Pixels of the overlay canvas per side colour, opaque and exact (antialiased edges are not).
COUNT_SIDE_PIXELS = """
const canvas = document.getElementById('overlay');
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
const colours = arguments[0];
const counts = Object.fromEntries(Object.keys(colours).map((side) => [side, 0]));
for (let i = 0; i < data.length; i += 4) {
  if (data[i + 3] !== 255) continue;
  for (const [side, [r, g, b]] of Object.entries(colours)) {
    if (data[i] === r && data[i + 1] === g && data[i + 2] === b) { counts[side] += 1; break; }
  }
}
return {counts, width: canvas.width, height: canvas.height};
"""

# What the browser does when a file is dropped on the picture area.
DROP_FILE = """
const [base64, name] = arguments;
const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, {type: 'image/jpeg'}));
document.getElementById('drop').dispatchEvent(
  new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
"""

PIXEL_AT = """
const [x, y] = arguments;
const pixel = document.getElementById('overlay').getContext('2d').getImageData(x, y, 1, 1).data;
return Array.from(pixel);
"""


# -- fixtures: weights, the real server, a fake camera clip, the browser -----------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A random-init `ldnet_s` checkpoint written the way `ldnet train` writes it."""
    from ldnet.checkpoint import atomic_save
    from ldnet.config import config_from_dict
    from ldnet.data.keypoints import KEYPOINT_SETS
    from ldnet.engine.train import checkpoint_payload
    from ldnet.models import build_model

    torch.manual_seed(0)
    config = config_from_dict(
        {"model": {"name": "ldnet_s"}, "data": {"dataset": "coco", "input_size": [64, 64]}}
    )
    model = build_model("ldnet_s", KEYPOINT_SETS["coco"].num_joints)
    optimizer = torch.optim.Adam(model.parameters())
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    path = tmp_path_factory.mktemp("weights") / "ldnet_s.pt"
    return atomic_save(checkpoint_payload(config, model, optimizer, scaler, 1, 1, 0.0), path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory) -> str:
    """`ldnet serve` on 127.0.0.1 and a free port, with an API key, ready (GET /readyz 200);
    its base URL."""
    port = free_port()
    folder = tmp_path_factory.mktemp("serve")
    key_file = folder / "api-key"
    key_file.write_text(API_KEY + "\n")
    log = (folder / "serve.log").open("w+")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ldnet.cli", "serve", "--weights", str(weights)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--api-key-file", str(key_file)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"ldnet serve exited with {process.returncode}:\n{log.read()}")
            try:
                ready = httpx.get(f"{url}/readyz", headers=KEY_HEADER, timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"ldnet serve not ready within 90 s:\n{log.read()}")
            time.sleep(0.25)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def write_y4m(video: Path, target: Path, width: int = 320) -> Path:
    """The clip as a Y4M file (planar I420), the format Chromium's fake capture device plays
    in a loop; scaled to ``width`` so each camera frame is a small upload."""
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        height = round(frame.shape[0] * width / frame.shape[1] / 2) * 2  # I420 wants even sides
        frames.append(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
    capture.release()
    assert frames, f"{video}: no frames read"
    height = frames[0].shape[0]
    with target.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return target


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    camera = write_y4m(VIDEO, tmp_path_factory.mktemp("camera") / "posetrack.y4m")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",  # grant the camera without a prompt
        f"--use-file-for-fake-video-capture={camera}",
        "--window-size=390,844",  # a phone's screen: the page must fit it
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_script_timeout(30)
    yield browser
    browser.quit()


# -- helpers -----------------------------------------------------------------------------------


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def app_state(browser) -> dict[str, str]:
    return browser.execute_script(
        "return Object.assign({}, document.getElementById('app').dataset);"
    )


def open_page(browser, url: str) -> int:
    """Load the page, give it the API key, set the threshold to 0; the errors shown so far
    (the page asks for the model before it has the key: one 401)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{url}/")
    browser.find_element(By.ID, "api-key").send_keys(API_KEY, Keys.TAB)
    wait_for(lambda: app_state(browser).get("model"), 20, "the model description")
    # Keyboard only: the threshold slider to 0 (random weights score low; draw everything).
    slider = browser.find_element(By.ID, "threshold")
    slider.send_keys(Keys.HOME)
    assert browser.find_element(By.ID, "threshold-value").text == "0.00"
    assert not browser.find_element(By.ID, "error").is_displayed()
    return int(app_state(browser)["errors"])


def choose_people_from(browser, value: str, boxes: list | None = None) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f'input[name="people-from"][value="{value}"]').click()
    if boxes is not None:
        field = browser.find_element(By.ID, "boxes")
        field.clear()
        field.send_keys(json.dumps(boxes))


def ground_truth_boxes(image_id: int) -> list[list[float]]:
    annotations = json.loads(VAL_ANN.read_text())["annotations"]
    return [a["bbox"] for a in annotations if a["image_id"] == image_id and a["num_keypoints"]]


def api_pose(url: str, image: Path, boxes: list | None = None) -> dict:
    params = {"flip": "true"}
    if boxes is not None:
        params["boxes"] = json.dumps(boxes)
    response = httpx.post(
        f"{url}/v1/pose",
        params=params,
        content=image.read_bytes(),
        headers={"Content-Type": "image/jpeg", **KEY_HEADER},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


# -- tests ------------------------------------------------------------------------------------


def test_keyboard_reaches_every_control_in_reading_order(driver, server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{server}/")
    visited = []
    for _ in range(7):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        element = driver.switch_to.active_element
        name = element.get_attribute("id") or (
            f"{element.get_attribute('name')}={element.get_attribute('value')}"
        )
        visited.append(name)
    # "Estimate again" is disabled until there is an image; a radio group is one stop.
    assert visited == [
        "file",
        "camera",
        "people-from=detect",
        "boxes",
        "threshold",
        "flip",
        "api-key",
    ]


def test_page_asks_for_the_api_key_and_works_once_given(driver, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    message = httpx.get(f"{server}/v1/model").json()["error"]
    driver.get(f"{server}/")
    wait_for(lambda: app_state(driver)["errors"] == "1", 20, "the missing-key error")
    error = driver.find_element(By.ID, "error")
    assert error.text == f"Server answered 401: {message}. Enter the server's API key above."
    assert app_state(driver)["model"] == ""

    driver.find_element(By.ID, "api-key").send_keys(API_KEY, Keys.TAB)
    wait_for(lambda: app_state(driver)["model"], 20, "the model description")
    model = httpx.get(f"{server}/v1/model", headers=KEY_HEADER).json()
    assert app_state(driver)["model"] == model["name"] == "ldnet_s"
    assert not error.is_displayed()


def test_uploaded_image_gets_the_apis_skeletons_drawn(driver, server):
    from selenium.webdriver.common.by import By

    image = VAL2017 / f"{IMAGE_ID:012d}.jpg"
    boxes = ground_truth_boxes(IMAGE_ID)
    assert len(boxes) == 4
    errors = open_page(driver, server)
    choose_people_from(driver, "boxes", boxes)
    driver.find_element(By.ID, "file").send_keys(str(image))
    wait_for(lambda: app_state(driver)["results"] == "1", 60, "the image's result")

    api = api_pose(server, image, boxes)
    state = app_state(driver)
    assert int(state["people"]) == len(api["people"]) == len(boxes)
    assert driver.find_element(By.ID, "people-count").text == str(len(boxes))
    listed = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#people li")]
    # Threshold 0 draws everything, negative scores of random weights included.
    assert listed == [
        f"score {person['score']:.2f}, 17/17 joints shown" for person in api["people"]
    ]
    assert state["maxInFlight"] == "1" and int(state["errors"]) == errors

    drawn = driver.execute_script(COUNT_SIDE_PIXELS, SIDE_RGB)
    height, width = cv2.imread(str(image)).shape[:2]
    assert (drawn["width"], drawn["height"]) == (width, height)
    # Left and right have limbs and dots; the centre (COCO: the nose) a dot per person, each
    # some 40 px (radius 4 px) where no later limb covers it.
    counts = drawn["counts"]
    assert counts["left"] > 1000 and counts["right"] > 1000 and counts["centre"] > 20, counts
    # The last joint drawn (the last person's right ankle) sits at the API's coordinates.
    last = api["people"][-1]["keypoints"][-1]
    assert last["name"] == "right_ankle"
    pixel = driver.execute_script(PIXEL_AT, int(last["x"]), int(last["y"]))
    assert tuple(pixel[:3]) == SIDE_RGB["right"] and pixel[3] == 255

    # The score threshold hides people below it, without a new request.
    middle = float(np.median([person["score"] for person in api["people"]]))
    driver.execute_script(
        "const s = document.getElementById('threshold'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input'));",
        middle,
    )
    above = sum(middle <= 0 or person["score"] >= middle for person in api["people"])
    assert app_state(driver)["people"] == str(above) and app_state(driver)["results"] == "1"

    # A phone-width window (390 px): the page scrolls down, never sideways.
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;"
    )


def test_dropped_image_shows_the_people_the_servers_detector_finds(driver, server):
    image = VAL2017 / "000000217285.jpg"  # OpenCV's HOG finds three of its people
    open_page(driver, server)
    driver.execute_script(DROP_FILE, base64.b64encode(image.read_bytes()).decode(), image.name)
    wait_for(lambda: app_state(driver)["results"] == "1", 60, "the image's result")
    api = api_pose(server, image)
    assert len(api["people"]) >= 1
    assert app_state(driver)["people"] == str(len(api["people"]))


def test_server_error_is_shown_from_its_json(driver, server):
    from selenium.webdriver.common.by import By

    image = VAL2017 / f"{IMAGE_ID:012d}.jpg"
    outside = [[5000, 5000, 10, 10]]
    response = httpx.post(
        f"{server}/v1/pose",
        params={"boxes": json.dumps(outside)},
        content=image.read_bytes(),
        headers={"Content-Type": "image/jpeg", **KEY_HEADER},
        timeout=60,
    )
    assert response.status_code == 422
    message = response.json()["error"]

    errors = open_page(driver, server)
    choose_people_from(driver, "boxes", outside)
    driver.find_element(By.ID, "file").send_keys(str(image))
    wait_for(lambda: int(app_state(driver)["errors"]) == errors + 1, 60, "the error")
    error = driver.find_element(By.ID, "error")
    assert error.is_displayed() and error.get_attribute("role") == "alert"
    assert error.text == f"Server answered 422: {message}."
    assert app_state(driver)["results"] == "0"


def test_live_camera_draws_results_one_request_at_a_time(driver, server):
    from selenium.webdriver.common.by import By

    errors = open_page(driver, server)
    choose_people_from(driver, "whole")  # the clip's walkers, as one person per frame
    camera = driver.find_element(By.ID, "camera")
    camera.click()
    wait_for(lambda: int(app_state(driver)["results"]) >= 3, 60, "three live results")
    state = app_state(driver)
    assert state["mode"] == "live" and state["maxInFlight"] == "1"
    assert int(state["errors"]) == errors
    assert state["people"] == "1"
    drawn = driver.execute_script(COUNT_SIDE_PIXELS, SIDE_RGB)
    assert (drawn["width"], drawn["height"]) == (320, 180)
    assert sum(drawn["counts"].values()) > 100, drawn["counts"]
    assert float(driver.find_element(By.ID, "fps").text) > 0
    assert driver.find_element(By.ID, "latency").text.endswith("ms)")
    assert camera.get_attribute("aria-pressed") == "true"

    camera.click()
    assert app_state(driver)["mode"] == "idle"
    received = app_state(driver)["results"]
    time.sleep(1.0)  # a stopped camera sends nothing more
    assert app_state(driver)["results"] == received
    assert app_state(driver)["maxInFlight"] == "1"
