"""validate_model.py --html: the page as a person sees it, rendered by headless Chromium.

Chromium (Debian's ``chromium``; ``make test`` installs it like openssh-server) loads the page in
a frame of a small probe page beside it, which writes what the page shows (its rendered text,
and each image's decoded size) into its own DOM; ``--dump-dom`` prints that. A screenshot checks
that the figures' pixels are on screen. Outside CI a missing Chromium skips with the reason;
under CI=true it fails.
"""
from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_validate import SCRIPT, _add_hw, _rehash, _save, make_package  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")
# The probe: reads the page in its frame (file:// frames may read each other only with
# --allow-file-access-from-files) and writes what it finds into <pre id="seen">.
PROBE = """<!DOCTYPE html><meta charset="utf-8"><iframe id="page" src="PAGE" width="1200" height="900"></iframe>
<pre id="seen"></pre><script>
document.getElementById("page").onload = function () {
  var d = this.contentDocument;
  document.getElementById("seen").textContent = JSON.stringify({
    text: d.body.innerText, scripts: d.scripts.length,
    images: Array.from(d.images).map(function (i) {
      return {alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}; })});
};
</script>"""


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        reason = "chromium not installed (Debian: apt-get install chromium; make test installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: under CI the page must be rendered")
        pytest.skip(reason)
    return found


def _chromium(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "chromium-profile"
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


def seen(chromium: str, page: Path) -> dict:
    """What Chromium shows of ``page``: rendered text, script count, images with decoded sizes."""
    probe = page.with_name("probe.html")
    probe.write_text(PROBE.replace("PAGE", page.name))
    proc = _chromium(chromium, page.parent, "--allow-file-access-from-files", "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="seen">(.*?)</pre>', proc.stdout, re.S)
    assert proc.returncode == 0 and found and found.group(1), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


def screenshot(chromium: str, page: Path, tmp: Path) -> np.ndarray:
    import matplotlib.image

    shot = tmp / "screenshot.png"
    proc = _chromium(chromium, tmp, "--window-size=1200,2600", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    return (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int)


def inlined_pngs(page: Path) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page.read_text())]


def pixels_like(image: np.ndarray, rgb: tuple[int, int, int], tol: int = 6) -> int:
    return int(np.sum(np.all(np.abs(image - np.array(rgb)) <= tol, axis=-1)))


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def pkg(tmp_path) -> Path:
    return make_package(tmp_path / "package")


# ---------------------------------------------------------------------------------------------
def test_page_shows_the_verdict_accuracies_and_figures(chromium, pkg, tmp_path):
    _add_hw(pkg, mode="emulation")
    page = tmp_path / "out" / "validation.html"
    page.parent.mkdir()
    proc = run(pkg, "--html", page)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert [p.name for p in page.parent.iterdir()] == ["validation.html"]  # no temporary file left behind

    text = page.read_text()
    # self-contained: every src/href is inline data, and the policy forbids any other source
    assert re.findall(r'(?:src|href)="(?!data:)', text) == [] and "http" not in text.replace("http-equiv", "")
    assert "default-src 'none'" in text

    shown = seen(chromium, page)
    assert "Verdict: PASS (exit 0)" in shown["text"]
    top = shown["text"].split("Verdict:")[0]  # an emulated result says so before the verdict, not only below
    assert "y_hw.npy from emulation (C-simulation library behind the pynq stand-in" in top
    for label in ("Keras", "HLS C-sim", "hardware"):
        assert re.search(rf"{re.escape(label)}\s+y_\w+\.npy\s+30/30\s+100\.00%", shown["text"]), label
    assert "PASS\thardware vs HLS C-sim classes" in shown["text"]
    # each figure decoded at the size of the PNG that was inlined
    pngs = inlined_pngs(page)
    assert [i["alt"] for i in shown["images"]] == ["confusion.png", "probabilities.png"]
    for image, png in zip(shown["images"], pngs):
        assert image["complete"] and (image["width"], image["height"]) == _png_size(png) and image["width"] > 300

    pixels = screenshot(chromium, page, tmp_path)
    assert pixels_like(pixels, (8, 48, 107)) > 1000  # the confusion matrices' dark diagonal ("Blues")
    assert pixels_like(pixels, (158, 202, 225)) > 1000  # the C-simulation's probability bars (#9ecae1)


def test_failing_verdict_and_hostile_strings_are_shown_as_text(chromium, pkg, tmp_path):
    hostile = ['<script>document.title="PASS"</script>', '<img src="http://example.invalid/x.png">', "vir\x1bginica"]
    _save(pkg, "classes.npy", np.array(hostile))
    y = np.load(pkg / "y_hls.npy")
    y[0] = y[0][::-1]  # the hardware picks another class for sample 0
    _add_hw(pkg, y, mode="board", date='</pre><h1>Verdict: PASS</h1>')
    page = tmp_path / "validation.html"
    assert run(pkg, "--html", page).returncode == 1
    shown = seen(chromium, page)
    lines = [line.strip() for line in shown["text"].splitlines()]
    assert "Verdict: FAIL (exit 1)" in lines and "Verdict: PASS" not in lines
    assert '</pre><h1>Verdict: PASS</h1>' in shown["text"]  # the date, shown as the text it is
    assert hostile[0] in shown["text"] and hostile[1] in shown["text"] and "vir\\x1bginica" in shown["text"]
    assert shown["scripts"] == 0 and len(shown["images"]) == 2  # no markup from the files, only the figures
    assert "FAIL\thardware vs HLS C-sim classes" in shown["text"]


def test_the_build_profile_is_inlined_when_the_package_lists_it(chromium, pkg, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0, 1], [1, 2], color="#c03020")
    fig.savefig(pkg / "numerical_profile.png")
    plt.close(fig)
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["files"]["numerical_profile.png"] = ""
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    _rehash(pkg, "numerical_profile.png")
    page = tmp_path / "validation.html"
    assert run(pkg, "--html", page).returncode == 0
    shown = seen(chromium, page)
    assert [i["alt"] for i in shown["images"]][-1] == "numerical_profile.png"
    assert all(i["complete"] and i["width"] > 0 for i in shown["images"])
    assert inlined_pngs(page)[-1] == (pkg / "numerical_profile.png").read_bytes()

    (pkg / "numerical_profile.png").write_bytes(b"\x89PNG\r\n\x1a\nchanged")
    page.unlink()
    proc = run(pkg, "--html", page)
    assert proc.returncode == 2 and "numerical_profile.png changed" in proc.stderr and not page.exists()


def test_unwritable_page_is_one_line_and_exit_2(pkg, tmp_path):
    page = tmp_path / "no such folder" / "validation.html"
    proc = run(pkg, "--html", page)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: cannot write") and proc.stderr.count("\n") == 1, proc.stderr
    old = tmp_path / "old.html"
    old.write_text("previous page")
    (pkg / "y_hls.npy").write_bytes(b"not a numpy file")  # a broken package: nothing replaces the old page
    assert run(pkg, "--html", old).returncode == 2 and old.read_text() == "previous page"


def _png_size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
