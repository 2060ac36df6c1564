"""`ldnet weights list / get` and weights by name: the catalogue's content, and the download
cache against an HTTP server started here on 127.0.0.1 (full file, a transfer cut midway and
resumed with a Range request, a server that ignores Range, wrong hash, 404, a closed port, no
answer). No test contacts a real address."""

import hashlib
import http.server
import json
import re
import socket
import threading

import cv2
import numpy as np
import pytest
import torch

from ldnet.cli import main
from ldnet.lineage.catalog import BUILTIN, CATALOG_ENV, CatalogError, catalog
from ldnet.lineage.download import DownloadError, cache_dir, fetch, resolve_weights

# -- a local server -------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    """GET of the server's files, with Range (one ``bytes=START-`` form, as the client
    sends), and ``server.cuts``: each request pops one byte count after which it hangs up."""

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        asked = self.headers.get("Range")
        if asked and server.honour_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if server.cuts:
            payload = payload[: server.cuts.pop(0)]  # then close: the client sees a short body
        self.wfile.write(payload)
        self.close_connection = True

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.delenv("LDNET_OFFLINE", raising=False)  # downloads, from this server only
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.requests, httpd.cuts, httpd.honour_range = {}, [], [], True
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


BODY = np.random.default_rng(7).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
BODY_SHA = hashlib.sha256(BODY).hexdigest()


def site_catalog(tmp_path, monkeypatch, *entries):
    path = tmp_path / "site-catalog.json"
    path.write_text(json.dumps(list(entries)))
    monkeypatch.setenv(CATALOG_ENV, str(path))
    return path


def backbone_entry(name, url, sha256):
    """A download-only entry (no import), so the transfer is tested on its own."""
    return {
        "name": name,
        "description": "bytes for the download tests",
        "kind": "backbone",
        "layout": "imagenet",
        "model": "hrnet_w32",
        "input_size": None,
        "dataset": None,
        "decoder": None,
        "metric": "none",
        "published": 0.0,
        "url": url,
        "sha256": sha256,
    }


@pytest.fixture
def blob(server, tmp_path, monkeypatch):
    """The server holds BODY at /blob.pth; the site catalogue names it ``blob``."""
    server.files["/blob.pth"] = BODY
    site_catalog(
        tmp_path, monkeypatch, backbone_entry("blob", f"{server.base}/blob.pth", BODY_SHA[:8])
    )
    return tmp_path / "cache"


def cache_files(folder):
    """The cache's files, without the lock files (hidden) that serialise concurrent gets."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def get(name, cache, capsys):
    code = main(["weights", "get", name, "--cache", str(cache)])
    captured = capsys.readouterr()
    return code, captured.out.strip(), captured.err.strip().splitlines()[-1:]


# -- download -------------------------------------------------------------------------------


def test_full_download_then_cache(server, blob, capsys):
    code, out, _ = get("blob", blob, capsys)
    assert code == 0
    assert out == str(blob / "blob.pth")
    assert (blob / "blob.pth").read_bytes() == BODY
    assert cache_files(blob) == ["blob.pth"]  # no .part left
    assert server.requests == [("/blob.pth", None)]
    # A second get is served from the cache: no request.
    code, out, _ = get("blob", blob, capsys)
    assert (code, out) == (0, str(blob / "blob.pth"))
    assert len(server.requests) == 1


def test_cut_transfer_resumes_with_range(server, blob, capsys):
    server.cuts = [100_000]  # the first response stops after 100,000 bytes
    code, out, _ = get("blob", blob, capsys)
    assert code == 0
    assert server.requests == [("/blob.pth", None), ("/blob.pth", "bytes=100000-")]
    assert (blob / "blob.pth").read_bytes() == BODY


def test_cut_every_time_keeps_part_and_next_run_resumes(server, blob, capsys):
    server.cuts = [50_000, 50_000, 50_000]  # every attempt of one run is cut
    code, _, err = get("blob", blob, capsys)
    assert code == 2
    assert "transfer cut 3 times" in err[0] and "run the command again to resume" in err[0]
    assert (blob / "blob.part").stat().st_size == 150_000
    assert not (blob / "blob.pth").exists()
    code, _, _ = get("blob", blob, capsys)  # the next run asks for the rest only
    assert code == 0
    assert server.requests[-1] == ("/blob.pth", "bytes=150000-")
    assert [r for _, r in server.requests] == [
        None,
        "bytes=50000-",
        "bytes=100000-",
        "bytes=150000-",
    ]
    assert (blob / "blob.pth").read_bytes() == BODY


def test_two_gets_at_once_download_once(server, blob):
    from concurrent.futures import ThreadPoolExecutor

    from ldnet.lineage.download import get as get_weights

    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda _: get_weights("blob", blob, progress=False), range(2)))
    assert paths == [blob / "blob.pth"] * 2
    assert server.requests == [("/blob.pth", None)]  # the second waited, then used the cache
    assert (blob / "blob.pth").read_bytes() == BODY


def test_server_that_ignores_range_restarts(server, blob, capsys):
    server.honour_range = False
    blob.mkdir()
    (blob / "blob.part").write_bytes(b"stale bytes of an earlier run")
    code, _, _ = get("blob", blob, capsys)
    assert code == 0
    assert server.requests == [("/blob.pth", "bytes=29-")]  # asked, answered 200: restart
    assert (blob / "blob.pth").read_bytes() == BODY


def test_complete_part_is_verified_not_fetched_again(server, blob, capsys):
    blob.mkdir()
    (blob / "blob.part").write_bytes(BODY)  # a run stopped between transfer and rename
    code, _, _ = get("blob", blob, capsys)
    assert code == 0
    assert server.requests == [("/blob.pth", f"bytes={len(BODY)}-")]  # answered 416
    assert (blob / "blob.pth").read_bytes() == BODY


def test_wrong_hash_deletes_the_file_and_names_both_prefixes(server, tmp_path, monkeypatch, capsys):
    server.files["/blob.pth"] = BODY
    expected = "0123abcd" if not BODY_SHA.startswith("0123abcd") else "fedc4321"
    site_catalog(tmp_path, monkeypatch, backbone_entry("bad", f"{server.base}/blob.pth", expected))
    cache = tmp_path / "cache"
    code, _, err = get("bad", cache, capsys)
    assert code == 2
    assert f"wrong sha256: expected {expected}..., found {BODY_SHA[:8]}..." in err[0]
    assert cache_files(cache) == []  # nothing that failed its hash stays in the cache


def test_http_404(server, tmp_path, monkeypatch, capsys):
    site_catalog(tmp_path, monkeypatch, backbone_entry("gone", f"{server.base}/gone.pth", "0" * 8))
    code, _, err = get("gone", tmp_path / "cache", capsys)
    assert code == 2
    assert err == [f"ldnet weights: error: {server.base}/gone.pth: HTTP 404 Not Found"]
    assert cache_files(tmp_path / "cache") == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_host(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LDNET_OFFLINE")
    port = free_port()  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/x.pth"
    site_catalog(tmp_path, monkeypatch, backbone_entry("far", url, "0" * 8))
    code, _, err = get("far", tmp_path / "cache", capsys)
    assert code == 2
    assert err[0].startswith(f"ldnet weights: error: {url}: cannot reach 127.0.0.1:{port} (")
    assert "refused" in err[0].lower()


def test_no_answer_times_out(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        host, port = silent.getsockname()
        url = f"http://{host}:{port}/x.pth"
        with pytest.raises(DownloadError) as error:
            fetch(url, tmp_path / "x.pth", "0" * 8, timeout_s=0.3, progress=False)
    assert str(error.value) == f"{url}: no answer from 127.0.0.1:{port} within 0.3 s"
    assert list(tmp_path.iterdir()) == []


def test_cache_folder_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("LDNET_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache_dir() == tmp_path / "a"
    assert cache_dir(tmp_path / "c") == tmp_path / "c"
    monkeypatch.delenv("LDNET_CACHE")
    assert cache_dir() == tmp_path / "b" / "ldnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ldnet"


# -- the catalogue --------------------------------------------------------------------------

FIELDS = {
    "name", "description", "kind", "layout", "model", "input_size", "dataset", "decoder",
    "metric", "published", "url", "sha256", "note", "downloadable", "approx_mb", "hash_of",
}  # fmt: skip


def test_list_json_content(monkeypatch, capsys):
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    assert main(["weights", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == len(BUILTIN) == 15
    assert len({entry["name"] for entry in entries}) == len(entries)
    for entry in entries:
        assert set(entry) == FIELDS, entry["name"]
        assert entry["url"].startswith("https://"), entry["name"]
        assert entry["model"] == ("yolox" if entry["kind"] == "detector" else "hrnet_w32")
        if entry["downloadable"]:
            assert re.fullmatch(r"[0-9a-f]{8}", entry["sha256"]), entry["name"]
            # The prefix is the one in the published file name (MMPose's publish_model.py).
            assert f"-{entry['sha256']}" in entry["url"].rsplit("/", 1)[1], entry["name"]
        else:
            assert entry["sha256"] is None and "by hand" in entry["note"]
        if entry["kind"] == "pose":
            assert entry["decoder"] in ("msra", "dark")
            assert entry["dataset"] in ("coco", "mpii", "crowdpose")
            height, width = entry["input_size"]
            assert height % 32 == 0 and width % 32 == 0
    by_name = {entry["name"]: entry for entry in entries}
    # Published figures, as MMPose's model index and the HRNet README give them.
    assert by_name["hrnet_w32_coco_256x192"]["published"] == 74.6
    assert by_name["hrnet_w32_coco_256x192"]["sha256"] == "81c58e40"
    assert by_name["hrnet_w32_dark_coco_384x288"]["published"] == 76.6
    assert by_name["hrnet_w32_mpii_256x256"]["metric"] == "MPII val PCKh@0.5"
    assert by_name["pose_hrnet_w32_256x192"]["published"] == 74.4
    assert by_name["hrnet_w32_imagenet"]["url"].endswith("/hrnet_w32-36af842e.pth")
    # The YOLOX human detectors rtmlib's Body uses, as its MODE table names them.
    sdk = "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/"
    detectors = {e["name"]: e for e in entries if e["kind"] == "detector"}
    assert {
        name: (e["url"].removeprefix(sdk), e["input_size"]) for name, e in detectors.items()
    } == {
        "yolox_tiny_humanart": ("yolox_tiny_8xb8-300e_humanart-6f3252f9.zip", [416, 416]),
        "yolox_m_humanart": ("yolox_m_8xb8-300e_humanart-c2c7a14a.zip", [640, 640]),
        "yolox_x_humanart": ("yolox_x_8xb8-300e_humanart-a39d44ed.zip", [640, 640]),
    }
    assert all(e["layout"] == "mmdeploy-sdk" and e["downloadable"] for e in detectors.values())
    # Their hex digits are the source .pth's (MMPose's Human-Art table names the .pth files
    # yolox_*_humanart-<same digits>.pth), so they are printed, not checked, for the archive.
    assert {e["hash_of"] for e in detectors.values()} == {"checkpoint"}
    assert {e["hash_of"] for e in entries if e["kind"] != "detector"} == {"file"}
    assert [detectors[n]["approx_mb"] for n in sorted(detectors)] == [100.0, 20.0, 400.0]


def test_list_table_and_site_entries(server, blob, capsys):
    assert main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "KIND",
        "MODEL",
        "INPUT",
        "DATASET",
        "DECODER",
        "PUBLISHED",
        "FILE",
        "GET",
    ]
    rows = {
        line.split()[0]: line.split() for line in lines[1:] if line and not line.startswith("`")
    }
    assert set(rows) == {entry.name for entry in BUILTIN} | {"blob"}
    assert rows["hrnet_w32_coco_256x192"][:7] == [
        "hrnet_w32_coco_256x192",
        "pose",
        "hrnet_w32",
        "256x192",
        "coco",
        "msra",
        "74.6",
    ]
    assert rows["pose_hrnet_w32_256x192"][-2:] == ["by", "hand"]
    assert rows["yolox_m_humanart"][:4] == ["yolox_m_humanart", "detector", "yolox", "640x640"]


def test_site_catalog_errors_name_the_file_and_field(tmp_path, monkeypatch, capsys):
    path = site_catalog(tmp_path, monkeypatch, {"name": "x", "colour": "red"})
    with pytest.raises(CatalogError, match=r"site-catalog.json .* entry 0: unknown field 'colour'"):
        catalog()
    entry = backbone_entry("x", "ftp://mirror/x.pth", "0" * 8)
    path.write_text(json.dumps([entry]))
    assert main(["weights", "list"]) == 2
    assert "entry 0 ('x'): url must be http(s), got 'ftp://mirror/x.pth'" in capsys.readouterr().err
    path.write_text(json.dumps([backbone_entry("../escape", "https://mirror/x.pth", "0" * 8)]))
    with pytest.raises(CatalogError, match=r"entry 0 \('../escape'\): name: a letter or digit"):
        catalog()
    path.write_text("{not json")
    with pytest.raises(CatalogError, match="not a readable JSON file"):
        catalog()


def test_hand_only_entry_says_how(capsys, tmp_path):
    assert main(["weights", "get", "pose_hrnet_w32_256x192", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a direct download" in err and "ldnet weights import FILE" in err
    assert list(tmp_path.iterdir()) == []


# -- weights by name ------------------------------------------------------------------------


def test_resolve_weights_paths_and_names(tmp_path, monkeypatch, blob):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LDNET_CACHE", str(blob))
    (tmp_path / "hrnet_w32_coco_256x192").write_bytes(b"a local file wins over the name")
    assert resolve_weights("hrnet_w32_coco_256x192").read_bytes().startswith(b"a local file")
    # A path that does not exist stays a path: its loader names the missing file.
    assert str(resolve_weights("runs/x/best.pt")) == "runs/x/best.pt"
    assert str(resolve_weights("model.onnx")) == "model.onnx"
    with pytest.raises(
        DownloadError, match=r"^no such file or known weights name: nosuch; see ldnet weights list$"
    ):
        resolve_weights("nosuch")
    with pytest.raises(DownloadError, match="not pose weights; give it as model.init_weights"):
        resolve_weights("blob")
    assert resolve_weights("blob", kind="backbone") == blob / "blob.pth"  # init_weights=NAME
    assert (blob / "blob.pth").read_bytes() == BODY


def test_export_and_test_take_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["export", "onnx", "--weights", "nosuch", "--output", "m.onnx"])
    assert code == 2
    assert "no such file or known weights name: nosuch" in capsys.readouterr().err
    code = main(["test", "configs/none.yaml", "--weights", "nosuch"])
    assert code == 2
    assert "no such file or known weights name: nosuch" in capsys.readouterr().err


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    """An MMPose 1.x file of a real hrnet_w32 (seeded weights, official names): ~110 MB,
    written once for the module."""
    from lineage_weights import seeded_weights

    from ldnet.lineage.hrnet_names import name_map
    from ldnet.lineage.layouts import as_layout
    from ldnet.models import build_model

    ours = seeded_weights(build_model("hrnet_w32", 17).state_dict(), seed=3)
    names = name_map(ours)
    official = {names[name]: tensor for name, tensor in ours.items()}
    path = tmp_path_factory.mktemp("official") / "td-hm_hrnet-w32_coco-256x192.pth"
    torch.save({**as_layout(official, "mmpose-1.x"), "meta": {"epoch": 210}}, path)
    return path, ours


def test_name_end_to_end_through_predict(server, official_file, tmp_path, monkeypatch, capsys):
    path, ours = official_file
    data = path.read_bytes()
    server.files["/hrnet.pth"] = data
    prefix = hashlib.sha256(data).hexdigest()[:8]
    entry = {
        **backbone_entry("test_hrnet", f"{server.base}/hrnet.pth", prefix),
        "kind": "pose", "layout": "mmpose-1.x", "input_size": [256, 192],
        "dataset": "coco", "decoder": "msra",
    }  # fmt: skip
    site_catalog(tmp_path, monkeypatch, entry)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LDNET_CACHE", str(cache))
    image = tmp_path / "person.jpg"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (240, 180, 3), np.uint8))
    torch.set_num_threads(1)
    # First use of the name in `ldnet predict`: fetched, verified, imported, then predicted.
    args = ["predict", str(image), "--weights", "test_hrnet", "--output", str(tmp_path / "out")]
    args += ["--box", "10,10,150,200", "--no-flip", "--no-overlay", "--quiet"]
    assert main(args) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results) == 1 and len(results[0]["keypoints"]) == 17 * 3
    assert cache_files(cache) == ["test_hrnet.pt"]  # original removed
    # `get` now answers from the cache, and the cached checkpoint holds exactly those weights.
    capsys.readouterr()
    assert main(["weights", "get", "test_hrnet"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "test_hrnet.pt")
    assert server.requests == [("/hrnet.pth", None)]
    checkpoint = torch.load(cache / "test_hrnet.pt", map_location="cpu", weights_only=True)
    assert checkpoint["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert checkpoint["model"]["input_size"] == [256, 192]
    state = checkpoint["state_dict"]
    assert set(state) == set(ours)
    assert all(torch.equal(state[name], tensor) for name, tensor in ours.items())


# -- detectors by name: archive -> download -> cache -> verify -> predict --------------------

BLUE_BOX = (100, 80, 200, 160)  # x, y, w, h of the one "person" in blue_image


def detector_entry(name, url, sha256, approx_mb=2.0):
    return {
        **backbone_entry(name, url, sha256),
        "kind": "detector", "layout": "mmdeploy-sdk", "model": "yolox",
        "input_size": [416, 416], "approx_mb": approx_mb,
    }  # fmt: skip


@pytest.fixture(scope="module")
def blue_archive(tmp_path_factory):
    """A published-style archive of a YOLOX stand-in that finds blue_image's blue box."""
    from detector_nets import blue_box_yolox, sdk_archive

    folder = tmp_path_factory.mktemp("detector")
    return sdk_archive(blue_box_yolox(folder / "end2end.onnx"))


@pytest.fixture(scope="module")
def pose_weights(tmp_path_factory):
    from helpers import random_checkpoint

    return random_checkpoint(tmp_path_factory.mktemp("pose") / "random.pt")


def blue_image(tmp_path):
    from detector_nets import BLUE_BGR

    image = np.zeros((624, 832, 3), np.uint8)
    x, y, w, h = BLUE_BOX
    image[y : y + h, x : x + w] = BLUE_BGR
    path = tmp_path / "blue.png"  # PNG: JPEG would blur the box's edges
    cv2.imwrite(str(path), image)
    return path


def serve_detector(server, tmp_path, monkeypatch, archive, prefix=None, name="test_det"):
    server.files["/det.zip"] = archive
    prefix = prefix or hashlib.sha256(archive).hexdigest()[:8]
    site_catalog(tmp_path, monkeypatch, detector_entry(name, f"{server.base}/det.zip", prefix))
    cache = tmp_path / "cache"
    monkeypatch.setenv("LDNET_CACHE", str(cache))
    return cache


def predict_args(image, weights, out, *extra):
    return ["predict", str(image), "--weights", str(weights), "--output", str(out),
            "--no-flip", "--no-overlay", "--quiet", *extra]  # fmt: skip


def test_detector_name_end_to_end(server, blue_archive, pose_weights, tmp_path, monkeypatch,
                                  capsys):  # fmt: skip
    from ldnet.predict import PoseEstimator

    cache = serve_detector(server, tmp_path, monkeypatch, blue_archive)
    server.cuts = [len(blue_archive) // 2]  # the first transfer is cut halfway: resumed
    image = blue_image(tmp_path)
    code = main(predict_args(image, pose_weights, tmp_path / "out", "--detector", "test_det"))
    err = capsys.readouterr().err.splitlines()
    assert code == 0, err
    assert err[0] == f"fetching test_det (person detector, about 2 MB) into {cache}"
    assert "people: test_det (yolox ONNX, 416x416), score >= 0.3, NMS IoU 0.65" in err
    half = len(blue_archive) // 2
    assert server.requests == [("/det.zip", None), ("/det.zip", f"bytes={half}-")]
    assert cache_files(cache) == ["test_det.onnx"]  # unpacked once, the archive removed
    assert main(["weights", "get", "test_det"]) == 0  # now a cache read
    assert capsys.readouterr().out.strip() == str(cache / "test_det.onnx")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(results) == 1
    # Later uses read the cache; the box comes back in image pixels.
    estimator = PoseEstimator.from_weights(pose_weights, detector="test_det", flip=False)
    assert estimator.detector_line.startswith("people: test_det (yolox ONNX")
    poses = estimator(str(image))
    np.testing.assert_allclose(poses.boxes, [BLUE_BOX], atol=1e-3)
    np.testing.assert_allclose(poses.box_scores, [0.9], atol=1e-6)
    assert len(server.requests) == 2


def test_detector_archive_with_the_wrong_hash(server, blue_archive, pose_weights, tmp_path,
                                              monkeypatch, capsys):  # fmt: skip
    found = hashlib.sha256(blue_archive).hexdigest()[:8]
    expected = "0123abcd" if found != "0123abcd" else "fedc4321"
    cache = serve_detector(server, tmp_path, monkeypatch, blue_archive, prefix=expected)
    code = main(predict_args(blue_image(tmp_path), pose_weights, tmp_path / "out",
                             "--detector", "test_det"))  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (
        f"ldnet predict: error: {server.base}/det.zip: wrong sha256: expected {expected}..., "
        f"found {found}...; the download was deleted"
    )
    assert cache_files(cache) == [] and not (tmp_path / "out").exists()


def test_detector_archive_without_a_network(server, pose_weights, tmp_path, monkeypatch, capsys):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("sdk/deploy.json", "{}")
    cache = serve_detector(server, tmp_path, monkeypatch, buffer.getvalue())
    code = main(predict_args(blue_image(tmp_path), pose_weights, tmp_path / "out",
                             "--detector", "test_det"))  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"ldnet predict: error: {server.base}/det.zip: ")
    assert err[-1].endswith("det.zip: expected one end2end.onnx (or one .onnx file), found none")
    assert cache_files(cache) == []


def test_detector_offline(server, blue_archive, pose_weights, tmp_path, monkeypatch, capsys):
    cache = serve_detector(server, tmp_path, monkeypatch, blue_archive)
    monkeypatch.setenv("LDNET_OFFLINE", "1")
    image = blue_image(tmp_path)
    code = main(predict_args(image, pose_weights, tmp_path / "a", "--detector", "test_det"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(
        f"ldnet predict: error: test_det: not in the cache ({cache}) and LDNET_OFFLINE is set; "
        "fetch it where 127.0.0.1:"
    )
    assert err[0].endswith("ldnet weights get test_det (about 2 MB), then copy test_det.onnx "
                           "into the cache")  # fmt: skip
    assert server.requests == []
    # Without --detector: the offline fallback, HOG, said in one line; predict goes on.
    code = main(predict_args(image, pose_weights, tmp_path / "b"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and len(err) == 1
    assert err[0].startswith("people: OpenCV HOG people detector") and "offline fallback" in err[0]
    assert server.requests == []


def test_predict_without_weights_end_to_end(server, official_file, blue_archive, tmp_path,
                                            monkeypatch, capsys):  # fmt: skip
    """`ldnet predict SOURCE`: the default pose weights and the default detector, both named
    with their sizes in one line, fetched, verified, cached, then used (here the catalogue's
    two default names point at this server)."""
    path, _ = official_file
    data = path.read_bytes()
    server.files["/hrnet.pth"] = data
    server.files["/det.zip"] = blue_archive
    pose = {
        **backbone_entry("hrnet_w32_coco_256x192", f"{server.base}/hrnet.pth",
                         hashlib.sha256(data).hexdigest()[:8]),
        "kind": "pose", "layout": "mmpose-1.x", "input_size": [256, 192],
        "dataset": "coco", "decoder": "msra", "approx_mb": 115.0,
    }  # fmt: skip
    # As the built-in entry: the name's digits are not the archive's hash (hash_of checkpoint).
    detector = {
        **detector_entry("yolox_m_humanart", f"{server.base}/det.zip", "c2c7a14a"),
        "hash_of": "checkpoint",
    }
    site_catalog(tmp_path, monkeypatch, pose, detector)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LDNET_CACHE", str(cache))
    torch.set_num_threads(1)
    args = ["predict", str(blue_image(tmp_path)), "--output", str(tmp_path / "out"),
            "--no-flip", "--no-overlay", "--quiet"]  # fmt: skip
    assert main(args) == 0
    out, err = capsys.readouterr()
    err = err.strip().splitlines()
    assert err[0] == (
        "fetching hrnet_w32_coco_256x192 (the default pose weights for real photos, about "
        f"115 MB) and yolox_m_humanart (person detector, about 2 MB) into {cache}"
    )
    assert err[1] == (
        f"yolox_m_humanart: archive sha256 {hashlib.sha256(blue_archive).hexdigest()} (no hash "
        "is published for it; c2c7a14a in its name is its source checkpoint's); checked: a zip "
        "with one ONNX network that ONNX's checker accepts"
    )
    assert err[2] == "people: yolox_m_humanart (yolox ONNX, 416x416), score >= 0.3, NMS IoU 0.65"
    assert "1 frame(s), 1 people" in out
    assert cache_files(cache) == ["hrnet_w32_coco_256x192.pt", "yolox_m_humanart.onnx"]
    # The second time, all cached: no fetch line, no request; the weights line says which.
    assert main(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "weights: hrnet_w32_coco_256x192 (the default pose weights for real photos)"
    assert len(server.requests) == 2


def test_predict_without_weights_offline_says_what_to_fetch(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    monkeypatch.setenv("LDNET_CACHE", str(tmp_path / "empty"))
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    code = main(["predict", str(image), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        "ldnet predict: error: hrnet_w32_coco_256x192: not in the cache "
        f"({tmp_path / 'empty'}) and LDNET_OFFLINE is set; fetch it where "
        "download.openmmlab.com is reachable: ldnet weights get hrnet_w32_coco_256x192 "
        "(about 115 MB), then copy hrnet_w32_coco_256x192.pt into the cache"
    ]
    # No LDNET_OFFLINE, but no route to the address: the same advice after the reason.
    monkeypatch.delenv("LDNET_OFFLINE")
    url = f"http://127.0.0.1:{free_port()}/hrnet.pth"
    pose = {
        **backbone_entry("hrnet_w32_coco_256x192", url, "0" * 8),
        "kind": "pose",
        "input_size": [256, 192],
        "dataset": "coco",
        "decoder": "msra",
        "approx_mb": 115.0,
    }
    site_catalog(tmp_path, monkeypatch, pose)  # fmt: skip
    code = main(["predict", str(image), "--output", str(tmp_path / "out"), "--box", "1,1,9,9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[0].startswith("fetching hrnet_w32_coco_256x192 (the default pose weights")
    assert err[1].startswith(f"ldnet predict: error: {url}: cannot reach 127.0.0.1:")
    assert err[1].endswith("; fetch hrnet_w32_coco_256x192 (about 115 MB) with `ldnet weights "
                           "get hrnet_w32_coco_256x192` where the address is reachable, or give "
                           "--weights FILE")  # fmt: skip
    assert len(err) == 2 and not (tmp_path / "out").exists()


def test_unpinned_archive_with_the_wrong_network_is_not_kept(server, pose_weights, tmp_path,
                                                             monkeypatch, capsys):  # fmt: skip
    """No hash vouches for an archive whose name carries its checkpoint's digits: what it
    holds is checked instead, and a network of another form is refused and not cached."""
    import onnx
    from detector_nets import constant_yolox, sdk_archive

    path = constant_yolox(tmp_path / "end2end.onnx", [[0, 0, 9, 9, 0.9]], [0])
    model = onnx.load(str(path))
    del model.graph.output[1]  # no labels
    onnx.save(model, str(path))
    server.files["/det.zip"] = sdk_archive(path)
    entry = {**detector_entry("test_det", f"{server.base}/det.zip", "c2c7a14a"),
             "hash_of": "checkpoint"}  # fmt: skip
    site_catalog(tmp_path, monkeypatch, entry)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LDNET_CACHE", str(cache))
    code = main(predict_args(blue_image(tmp_path), pose_weights, tmp_path / "out",
                             "--detector", "test_det"))  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == (
        f"ldnet predict: error: {cache / 'test_det.onnx'}: output 0 of shape [1, 1, 5] looks "
        "like MMDeploy's dets (1, N, 5) but output 1 (labels, expected (1, 1)) is none"
    )
    assert cache_files(cache) == []
