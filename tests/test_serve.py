"""`spic serve`: a real server on localhost with the shipped models, driven by gradio_client and by a real browser.

The client codes and decodes the shipped examples and checks the figures against the files the page returns;
every refusal is checked as the sentence the page shows. Headless Chromium (Debian's `chromium`, where
installed; skipped with the reason otherwise) loads the page, runs an example and saves a screenshot. Set
SPIC_SERVE_SCREENSHOT=PATH to keep it (the README's picture is made so).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio = pytest.importorskip("gradio", reason="spic serve needs the serve extra (pip install -e '.[serve]')")
gradio_client = pytest.importorskip("gradio_client", reason="the page is driven with gradio_client (serve extra)")

from spic_diffusers import codec, demo  # noqa: E402
from spic_diffusers.cli import main  # noqa: E402
from spic_diffusers.serve.app import example_files, serve  # noqa: E402
from spic_diffusers.serve.space import SpaceError, push_space, write_space  # noqa: E402

MAX_PIXELS = 400 * 500  # above the shipped 360x480 frames, small enough for a cheap over-budget upload
DEFAULTS = {"mode": "coarse quality", "target_bpp": 0.15, "coarse_quality": 35, "downsample": 4, "decoder": "fast"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The page as `spic serve` starts it, on a free port; closed after the module."""
    app = serve("127.0.0.1", _free_port(), threads=1, max_pixels=MAX_PIXELS, block=False)
    yield app
    app.close()


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.local_url, verbose=False, download_files=True)


def _compare(client, photo, label_map=None, **settings):
    values = {**DEFAULTS, **settings}
    handle = gradio_client.handle_file
    return client.predict(handle(str(photo)), None if label_map is None else handle(str(label_map)),
                          values["mode"], values["target_bpp"], values["coarse_quality"], values["downsample"],
                          values["decoder"], api_name="/compare")  # fmt: skip


def _figures(markdown: str) -> dict[str, list[str]]:
    """The figures table's rows by candidate name (without the quality in brackets)."""
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[1].isdigit():
            rows[re.sub(r" \(quality .*\)$", "", cells[0])] = cells[1:]
    return rows


def test_an_example_is_coded_and_decoded_with_figures_and_files(client):
    photo, label_map = example_files()[0]
    *images, figures, status, stream_file, times = _compare(client, photo, label_map)
    height, width = demo.model_size(demo.load_pipeline(demo.shipped_model_path("fast")))
    arrays = [np.asarray(Image.open(path)) for path in images]
    assert [a.shape for a in arrays] == [(height, width, 3)] * 6
    assert all(Path(path).suffix == ".png" for path in images)  # shown losslessly, never re-coded by the page
    original, colour_map, coarse, spic, hevc, webp = arrays
    assert not np.array_equal(spic, coarse) and not np.array_equal(hevc, webp)

    stream = Path(stream_file).read_bytes()
    assert Path(stream_file).suffix == ".spic"
    parts = codec.decode_parts(stream)
    assert (parts.semantic_map == demo.read_segmentation(label_map)).all()  # the uploaded map, losslessly
    info = codec.bpp_breakdown(stream)
    assert f"{info['bytes']['total']} bytes = {info['bpp']['total']:.4f} bpp" in figures
    assert f"map {info['bytes']['map']} B ({info['bpp']['map']:.4f} bpp)" in figures
    assert f"coarse image {info['bytes']['coarse']} B" in figures

    rows = _figures(figures)
    assert set(rows) == {"SPIC", "coarse (bicubic)", "HEVC", "WebP"}
    assert int(rows["SPIC"][0]) == len(stream)
    for name in ("HEVC", "WebP"):  # the whole image at the same byte count (at most the stream's, and close)
        assert 0.7 * len(stream) <= int(rows[name][0]) <= len(stream)
    for row in rows.values():  # PSNR, boundary PSNR and mIoU for every candidate
        psnr, boundary, miou = float(row[2]), float(row[3]), float(row[4])
        assert 10 < psnr < 60 and 5 < boundary < 60 and 0 <= miou <= 1
    assert float(rows["SPIC"][5]) > 0  # SPIC's decode time
    assert "uploaded label map" in status
    assert "Expected decode time" in times and "paper sampler" in times


def test_without_a_map_the_shipped_segmenter_predicts_one_and_the_page_says_so(client):
    photo, _ = example_files()[1]
    *_, status, stream_file, _ = _compare(client, photo, mode="target bpp", target_bpp=0.2)
    assert f"predicted by the shipped segmenter ({demo.shipped_segmenter_path().name})" in status
    stream = Path(stream_file).read_bytes()
    assert 0.15 < codec.bpp_breakdown(stream)["bpp"]["total"] <= 0.2


def test_the_page_loads_nothing_from_the_internet(server):
    import urllib.request

    html = urllib.request.urlopen(server.local_url, timeout=30).read().decode()
    assert "<gradio-app" in html or "gradio" in html.lower()
    loaded = re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", html)  # scripts, styles, fonts, icons
    assert [url for url in loaded if not url.startswith(server.local_url.rstrip("/"))] == []


def _write(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path)
    return path


@pytest.fixture(scope="module")
def bad_uploads(tmp_path_factory) -> dict[str, tuple]:
    folder = tmp_path_factory.mktemp("uploads")
    photo, label_map = example_files()[0]
    height, width = np.asarray(Image.open(photo)).shape[:2]
    (folder / "notes.png").write_text("not an image at all")
    outside = np.full((height, width), 40, np.uint8)
    return {
        "not an image": ((folder / "notes.png", None), "notes.png is not an image"),
        "too many pixels": ((_write(folder / "big.png", np.zeros((401, 500, 3), np.uint8)), None),
                            f"more than the {MAX_PIXELS}"),
        "map of another size": ((photo, _write(folder / "small_map.png", np.zeros((8, 8), np.uint8), "L")),
                                f"8x8 but the photograph is {height}x{width}"),
        "map outside the train ids": ((photo, _write(folder / "ids.png", outside, "L")), "values [40]"),
        "colour map": ((photo, _write(folder / "rgb.png", np.zeros((height, width, 3), np.uint8))),
                       "single-channel PNG of train ids"),
        "unreachable rate": ((photo, label_map), "cannot reach 0.01 bpp"),
    }


@pytest.mark.parametrize("case", ["not an image", "too many pixels", "map of another size",
                                  "map outside the train ids", "colour map", "unreachable rate"])
def test_bad_uploads_get_one_sentence_on_the_page(client, bad_uploads, case):
    (photo, label_map), expected = bad_uploads[case]
    settings = {"mode": "target bpp", "target_bpp": 0.01} if case == "unreachable rate" else {}
    with pytest.raises(gradio_client.exceptions.AppError) as raised:
        _compare(client, photo, label_map, **settings)
    message = str(raised.value)
    assert expected in message
    assert "Traceback" not in message and "File \"" not in message


@pytest.mark.parametrize("argv, expected", [
    (["--port", "70000"], "--port must be within 1..65535"),
    (["--max_pixels", "0"], "--max_pixels must be >= 1"),
])
def test_spic_serve_refuses_bad_options_in_one_line(capsys, argv, expected):
    assert main(["serve", *argv]) == 1
    assert f"spic serve: error: {expected}" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# The Space
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    return write_space(tmp_path_factory.mktemp("space") / "spic-space")


def test_the_space_folder_has_its_metadata_requirements_and_package(space):
    readme = (space / "README.md").read_text(encoding="utf-8")
    meta = readme.split("---")[1]
    for line in ("sdk: gradio", f"sdk_version: {gradio.__version__}", "app_file: app.py"):
        assert line in meta.splitlines()
    requirements = (space / "requirements.txt").read_text().split()
    assert any(r.startswith("torch") for r in requirements) and any(r.startswith("diffusers") for r in requirements)
    assert not any("extra" in r for r in requirements)
    carried = space / "src" / "spic_diffusers"
    assert (carried / "serve" / "app.py").is_file()
    assert (carried / "assets" / demo.shipped_model_path("fast").name / "model_index.json").is_file()
    assert not list(carried.rglob("__pycache__"))
    with pytest.raises(SpaceError, match="not empty"):
        write_space(space)


def test_the_space_runs_its_app_with_the_package_it_carries(space):
    """`python app.py` as a Space starts it, from a folder outside the repository, on a free port."""
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "PYTHONPATH": "", "GRADIO_ANALYTICS_ENABLED": "False"}  # fmt: skip
    process = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline, client = time.monotonic() + 120, None
        while client is None and time.monotonic() < deadline and process.poll() is None:
            try:
                client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:  # not listening yet
                time.sleep(1)
        assert client is not None, f"the Space did not start: {process.poll()=}"
        assert "/compare" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    finally:
        process.terminate()
        process.communicate(timeout=30)
    # the app imports the package the folder carries, not one installed beside it
    probe = "import app, spic_diffusers; print(spic_diffusers.__file__)"
    carried = subprocess.run([sys.executable, "-c", probe], cwd=space, env=env, capture_output=True, text=True)
    assert Path(carried.stdout.strip()).resolve() == (space / "src" / "spic_diffusers" / "__init__.py").resolve()


def test_the_space_is_pushed_through_the_hub_path_of_the_models(space, monkeypatch):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: calls.append(("create", repo_id, kw))
                        or f"https://huggingface.co/spaces/{repo_id}")  # fmt: skip
    monkeypatch.setattr(HfApi, "upload_folder", lambda api, **kw: calls.append(("upload", kw["repo_id"], kw)))
    url = push_space(space, "someone/spic-demo", token="hf_test")
    assert url == "https://huggingface.co/spaces/someone/spic-demo"
    (_, repo, create), (_, uploaded, upload) = calls
    assert repo == uploaded == "someone/spic-demo"
    assert create["repo_type"] == "space" and create["space_sdk"] == "gradio" and create["exist_ok"]
    assert upload["repo_type"] == "space" and Path(upload["folder_path"]) == space
    with pytest.raises(SpaceError, match="lacks app.py"):
        push_space(space / "src", "someone/spic-demo")


# ----------------------------------------------------------------------------------------------------------
# A real browser
# ----------------------------------------------------------------------------------------------------------


class HeadlessChromium:
    """Chromium driven over the DevTools protocol on a pipe (fds 3 and 4): no driver, no extra package."""

    def __init__(self, binary: str, profile: Path, width: int = 1280, height: int = 1500) -> None:
        to_browser, self._write_fd = os.pipe()
        self._read_fd, from_browser = os.pipe()

        def child_fds() -> None:
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.process = subprocess.Popen(
            [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id = b"", 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def send(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"the page did not show {what} within {timeout:.0f} s")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        self.process.wait(timeout=20)
        os.close(self._write_fd)
        os.close(self._read_fd)


def _chromium() -> str | None:
    return next((path for path in map(shutil.which, ("chromium", "chromium-browser")) if path), None)


def test_a_browser_loads_the_page_runs_an_example_and_saves_a_screenshot(server, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no headless browser: Debian's `chromium` is not installed (CI installs none)")
    browser = HeadlessChromium(binary, tmp_path / "profile")
    try:
        browser.send("Page.navigate", session=True, url=server.local_url)
        browser.wait_for("!!document.querySelector('#run')", 60, "its button")
        frame = Path(example_files()[0][0]).name
        clicked = browser.wait_for(
            f"""(() => {{ const cell = [...document.body.querySelectorAll('button, td, div')]
                   .filter(e => e.children.length === 0 && e.textContent.includes({json.dumps(frame)}))
                   .find(e => !e.closest('#photo') && !e.closest('#label-map'));
                   if (!cell) return false; (cell.closest('tr') || cell).click(); return true; }})()""",
            30, "the examples",
        )
        assert clicked
        browser.wait_for(f"document.querySelector('#photo').innerText.includes({json.dumps(Path(frame).stem)})", 30,
                         "the example's file in the upload box")  # fmt: skip
        browser.evaluate("document.querySelector('#run').click()")
        figures = browser.wait_for(
            "(t => t.includes('SPIC stream') && t)(document.querySelector('#figures').innerText)", 120, "the figures"
        )
        assert "HEVC" in figures and "WebP" in figures
        browser.wait_for("[...document.querySelectorAll('#out-spic img, #out-hevc img')].every(i => i.complete "
                         "&& i.naturalWidth > 0) && document.querySelectorAll('#out-spic img').length > 0", 30,
                         "the reconstructions")  # fmt: skip
        height = browser.evaluate("document.documentElement.scrollHeight")
        browser.send("Emulation.setDeviceMetricsOverride", session=True, width=1280, height=int(height),
                     deviceScaleFactor=1, mobile=False)  # fmt: skip
        time.sleep(0.5)
        shot = base64.b64decode(browser.send("Page.captureScreenshot", session=True, format="png")["data"])
    finally:
        browser.close()
    path = tmp_path / "serve.png"
    path.write_bytes(shot)
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape[1] == 1280 and picture.shape[0] >= 600
    assert picture.reshape(-1, 3).std(axis=0).max() > 20  # a page with pictures on it, not a blank
    if os.environ.get("SPIC_SERVE_SCREENSHOT"):
        shutil.copy(path, os.environ["SPIC_SERVE_SCREENSHOT"])


def test_the_readme_shows_the_page_and_the_command_that_starts_it():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*spic serve[^\]]*\]\(([^)]+)\)", readme)
    assert len(pictures) == 1 and "spic serve" in readme.split(pictures[0])[0].rsplit("```bash", 1)[1]
    picture = root / pictures[0]
    assert picture.is_file() and picture.stat().st_size < 300_000
    assert Image.open(picture).width >= 1000
