"""The HTML report of a pose-transfer run: no source column (the method holds the subject), the stored frames
are the ground truth, one image per sample frame and method."""

from __future__ import annotations

import re

import pytest

from bench.results import Results
from bench.runner import MethodSpec, run_bench
from reports.html import render_html
from tests.bench.test_pose_transfer import TINY, body_store, checkpoint, torch_threads  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pose_results(body_store, checkpoint, tmp_path_factory) -> Results:  # noqa: F811 - the imported fixtures
    out = tmp_path_factory.mktemp("pose_report") / "res"
    with torch_threads(1):
        run_bench([MethodSpec("pose2img", str(checkpoint), str(TINY), label="edn")], body_store.root,
                  "pose-transfer", ["ssim"], out, workers=1, n_boot=20, progress=False, device="cpu")
    return Results(out)


def test_pose_transfer_grid_shows_ground_truth_and_no_source(pose_results):
    assert pose_results.manifest["run"]["protocol"]["name"] == "pose-transfer"
    html = render_html(pose_results, max_frames=3)
    grids = re.findall(r"<table class='grid'>(.*?)</table>", html)
    assert len(grids) == len(pose_results.sample_videos()) == 2
    for grid in grids:
        header = re.search(r"<tr>(.*?)</tr>", grid).group(1)
        assert header == "<th>frame</th><th>ground truth</th><th>edn</th>"
        rows = re.findall(r"<tr><td>\d+</td>(.*?)</tr>", grid)
        assert len(rows) == 3 and all(r.count("data:image/png;base64,") == 2 for r in rows)
    assert "<th>source</th>" not in html and "<th>driving</th>" not in html
