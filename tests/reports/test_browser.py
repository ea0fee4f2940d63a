"""The HTML report in a real headless Chromium: every image and animation loads, no script error, the hostile
video id does not run, the worst/best selector switches videos, the leaderboard is visible, and a 1280 px
screenshot. Skipped with the reason when no Chromium is installed and none can be (apt-get, as root)."""

from __future__ import annotations

import html as htmllib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from reports.html import render_html
from tests.reports.test_html import hostile_results  # noqa: F401 - the fixture

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
REPO = Path(__file__).resolve().parents[2]
# set to write docs/report-screenshot.png (the README's picture) from this test's report
UPDATE_SCREENSHOT = "ANIMBENCH_UPDATE_SCREENSHOT"

# runs before the report's own script: collects errors and would-be alerts (an unescaped id would call one)
HEAD_PROBE = ("<script>window.__errors=[];window.onerror=function(m){window.__errors.push(String(m))};"
              "window.alert=function(m){window.__errors.push('alert: '+m)};</script>")
# runs after load: writes what the test asserts into the DOM, which --dump-dom prints
BODY_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.map.call(document.images, function (im) {
    return {alt: im.alt, ok: im.complete && im.naturalWidth > 0, animation: im.classList.contains("animation")};
  });
  var board = document.querySelector("table.leaderboard");
  var select = document.getElementById("video-select");
  var shown = function () {
    return Array.prototype.filter.call(document.querySelectorAll("section.video"),
      function (s) { return !s.hidden && s.offsetHeight > 0; }).map(function (s) { return s.id; });
  };
  var before = shown();
  select.value = select.options[select.options.length - 1].value;
  select.dispatchEvent(new Event("change"));
  var probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({images: imgs, errors: window.__errors, before: before, after: shown(),
    board: board !== null && board.offsetHeight > 0 && board.getBoundingClientRect().top < window.innerHeight,
    scrollWidth: document.documentElement.scrollWidth});
  document.body.appendChild(probe);
});
</script>"""


def _browser() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        try:
            subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=240,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except subprocess.TimeoutExpired:
            pytest.skip("no Chromium: `apt-get install -y chromium` did not finish in 240 s")
        for name in BROWSERS:
            if shutil.which(name):
                return shutil.which(name)  # type: ignore[return-value]
        pytest.skip("no Chromium: `apt-get install -y chromium` failed (no network or no such package)")
    pytest.skip(f"no Chromium on PATH ({', '.join(BROWSERS)}) and not root with apt-get to install it")


@pytest.fixture(scope="module")
def browser() -> str:
    return _browser()


def _chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--window-size=1280,900",
           f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def report(hostile_results, tmp_path_factory) -> Path:  # noqa: F811 - the imported fixture
    page = render_html(hostile_results)
    page = page.replace("<head>", "<head>" + HEAD_PROBE, 1).replace("</body>", BODY_PROBE + "</body>", 1)
    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_report_loads_in_chromium_without_errors(browser, report, tmp_path):
    proc = _chromium(browser, tmp_path, "--dump-dom", report.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe in the dumped DOM (rc {proc.returncode}): {proc.stderr[-1500:]}"
    probe = json.loads(htmllib.unescape(found.group(1)))
    assert probe["errors"] == []
    assert probe["images"] and all(im["ok"] for im in probe["images"]), [im for im in probe["images"]
                                                                          if not im["ok"]]
    assert sum(im["animation"] for im in probe["images"]) == 3
    assert probe["board"], "the leaderboard is not visible in the first 900 px"
    assert probe["before"] == ["video-0"] and probe["after"] == ["video-2"]  # worst first; the selector switches
    assert probe["scrollWidth"] <= 1280, "the page overflows a 1280 px window"


def test_screenshot_at_1280_px(browser, report, tmp_path):
    shot = tmp_path / "report.png"
    proc = _chromium(browser, tmp_path, f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), proc.stderr[-1500:]
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        assert len(im.convert("L").getcolors(1 << 16) or ()) > 2  # more than a blank page
    if os.environ.get(UPDATE_SCREENSHOT):
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "report-screenshot.png")
