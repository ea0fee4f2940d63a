"""The HTML report: escaped untrusted names, no external URLs, animated grids, a worst/best selector, embedded
plots, the generation time the runner records, and figures written as PNG and PDF."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from bench.results import Results
from reports.html import render_html, write_html
from reports.plots import figures, seconds_per_frame

SIZE = 24
HOSTILE_VIDEO = "<script>alert(1)</script>&x"
HOSTILE_LABEL = "<i>o&r"


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory) -> Results:
    """A real bench run on three videos, one id and one method label full of HTML: copy-source is worse on the
    videos that move more, so the worst/best order is known (clip#2 worst, clip#0 best)."""
    from bench.runner import MethodSpec, run_bench
    from prep.store import FrameStoreWriter

    root = tmp_path_factory.mktemp("html")
    with FrameStoreWriter(root / "store", {"recipe": "test"}) as w:
        # a sine along x with a period of SIZE: a shift of up to SIZE / 2 pixels costs more the larger it is
        wave = 127.5 * (1 + np.sin(2 * np.pi * np.arange(SIZE) / SIZE))
        base = np.broadcast_to(wave[None, :, None], (SIZE, SIZE, 3)).astype(np.uint8)
        for i, vid in enumerate(["clip#0", HOSTILE_VIDEO, "clip#2"]):
            w.add_video(vid, [np.roll(base, (1 + i) * t, axis=1) for t in range(5)], split="test")  # 4, 8, 12 px
    run_bench([MethodSpec("copy-source"), MethodSpec("oracle", label=HOSTILE_LABEL)], root / "store",
              "reconstruction", ["l1", "ssim"], root / "res", workers=1, n_boot=50, progress=False, device="cpu")
    return Results(root / "res")


@pytest.fixture(scope="module")
def html(hostile_results) -> str:
    return render_html(hostile_results)


def test_untrusted_video_ids_and_method_labels_are_escaped(html):
    assert "<script>alert(1)" not in html and "<i>o&r" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;x" in html and "&lt;i&gt;o&amp;r" in html
    # the only script is the report's own selector
    assert len(re.findall(r"<script\b", html)) == 1


def test_report_references_nothing_outside_itself(html):
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", html, flags=re.I)
    assert refs and all(r.startswith("data:") for r in refs), [r[:40] for r in refs if not r.startswith("data:")]
    assert "<link" not in html and not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//|file:)""", html)


def _animations(html: str) -> list[Image.Image]:
    uris = re.findall(r'class="animation"[^>]*src="data:image/(?:webp|gif);base64,([^"]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(u))) for u in uris]


def test_grids_are_multi_frame_animations_with_every_column(hostile_results, html):
    anims = _animations(html)
    assert len(anims) == len(hostile_results.sample_videos()) == 3
    for im in anims:
        assert im.format in ("WEBP", "GIF") and im.n_frames == 4  # the four stored sample frames, in sync
        assert im.size == (128 * 4, 128)  # source | ground truth | copy-source | oracle
        frames = []
        for t in range(im.n_frames):
            im.seek(t)
            frames.append(np.asarray(im.convert("RGB")))
        assert any(not np.array_equal(frames[0], f) for f in frames[1:])  # it moves
        # the source column is held still while the ground truth plays; the oracle column equals it
        assert all(np.array_equal(frames[0][:, :128], f[:, :128]) for f in frames)
        assert all(np.array_equal(f[:, 128:256], f[:, 384:512]) for f in frames)


def test_selector_lists_sample_videos_worst_first(html):
    select = re.search(r'<select id="video-select">(.*?)</select>', html, re.S).group(1)
    options = re.findall(r'<option value="(video-\d)">(.*?)</option>', select)
    assert [v for v, _ in options] == ["video-0", "video-1", "video-2"]
    assert options[0][1].startswith("worst: clip#2 (l1 ") and options[-1][1].startswith("best: clip#0 (l1 ")
    assert "&lt;script&gt;" in options[1][1]
    for vid, _ in options:
        assert f'<section class="video" id="{vid}">' in html
    assert "Worst and best videos" in html


def test_plots_are_embedded_svg_and_speed_uses_the_recorded_generation_time(hostile_results, html):
    methods = hostile_results.manifest["run"]["methods"]
    for m in methods.values():
        assert m["generate_seconds"] >= 0 and m["frames"] == 15
    spf = seconds_per_frame(hostile_results)
    assert set(spf) <= set(methods)  # only methods whose timing is positive
    svgs = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert len(svgs) >= 4  # intervals and per-video distribution for l1 and ssim
    assert all(base64.b64decode(s).lstrip().startswith(b"<?xml") for s in svgs)
    assert "generation per frame" in html


def test_figures_are_written_as_png_and_pdf(hostile_results, tmp_path):
    paths = figures(hostile_results, tmp_path)
    names = {p.name for p in paths}
    for stem in ("bar_l1", "intervals_l1", "videos_ssim"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert all(p.read_bytes()[:4] == b"%PDF" for p in paths if p.suffix == ".pdf")
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths if p.suffix == ".png")


def test_report_without_generation_time_skips_the_speed_plot(hostile_results, tmp_path):
    class OldRun:  # a results directory written before the runner recorded generation time
        def __init__(self, r: Results) -> None:
            self._r = r
            self.root, self.methods, self.metrics = r.root, r.methods, r.metrics
            self.manifest = {**r.manifest, "run": {**r.manifest["run"], "methods": {
                k: {f: v for f, v in m.items() if f not in ("generate_seconds", "seconds_per_frame")}
                for k, m in r.manifest["run"]["methods"].items()}}}

        def __getattr__(self, name: str):
            return getattr(self._r, name)

    old = OldRun(hostile_results)
    assert seconds_per_frame(old) == {}
    path = write_html(old, tmp_path / "old.html")
    text = path.read_text()
    assert "against quality" not in text and "Leaderboard" in text and "Coverage" not in text


def test_report_of_merged_runs_names_each_run_and_animates_every_method(hostile_results, tmp_path):
    import shutil

    from reports.merge import load_results

    second = tmp_path / "second"
    shutil.copytree(hostile_results.root, second)
    merged = load_results([hostile_results.root, second])
    text = render_html(merged)
    assert len(merged.methods) == 4 and all("@" in m for m in merged.methods)
    assert '<h2 id="coverage">Runs</h2>' in text and ">second</td>" in text  # no official list: the runs only
    assert "<title>animbench: reconstruction on " in text and " on </title>" not in text
    anims = _animations(text)
    assert len(anims) == 3 and all(im.size == (128 * 6, 128) for im in anims)
    for im in anims:  # every method's column found its frames in its own run: no grey placeholder tile
        im.seek(1)
        frame = np.asarray(im.convert("RGB"))
        assert not any((frame[:, 128 * c:128 * (c + 1)] == 200).all() for c in range(6))
    assert "<i>o&r" not in text and "&lt;i&gt;o&amp;r@" in text


def test_worst_and_best_split_few_videos_instead_of_listing_the_best_as_worst(tmp_path):
    from reports.html import _worst_best
    from reports.merge import load_results
    from tests.reports.test_merge import make_results

    make_results(tmp_path / "r", {"fomm": 0.1}, n_videos=2)  # vid1 scores worse (higher l1) than vid0
    (row,) = _worst_best(load_results(tmp_path / "r"))
    assert [v["video"] for v in row["worst"]] == ["vid1"] and [v["video"] for v in row["best"]] == ["vid0"]
    make_results(tmp_path / "r7", {"fomm": 0.1}, n_videos=7)
    (row,) = _worst_best(load_results(tmp_path / "r7"))
    assert [v["video"] for v in row["worst"]] == ["vid6", "vid5", "vid4"]
    assert [v["video"] for v in row["best"]] == ["vid0", "vid1", "vid2"]


def test_speed_plot_labels_minor_ticks_only_on_a_narrow_range(tmp_path):
    from reports.merge import load_results
    from reports.plots import speed_figure
    from tests.reports.test_merge import make_results

    make_results(tmp_path / "r", {"fomm": 0.1, "oracle": 0.0})
    res = load_results(tmp_path / "r")

    def minor_labels(spf):
        res.manifest["run"]["methods"] = {"fomm": {"seconds_per_frame": spf[0]},
                                          "oracle": {"seconds_per_frame": spf[1]}}
        fig = speed_figure(res, "l1")
        fig.canvas.draw()
        return [t.get_text() for t in fig.axes[0].xaxis.get_minorticklabels() if t.get_text()]

    assert minor_labels((0.0012, 0.0018))  # within one decade: minor ticks carry the numbers
    assert not minor_labels((0.0003, 0.06))  # over two decades: only the decades, no crowded labels


def test_with_more_sample_videos_than_shown_the_selector_keeps_both_ends(hostile_results):
    # 3 sample videos, 2 shown: the worst and the best, so "best:" labels the real best, not the 2nd worst
    text = render_html(hostile_results, max_videos=2, plots=False)
    select = re.search(r'<select id="video-select">(.*?)</select>', text, re.S).group(1)
    options = re.findall(r'<option value="video-\d">(.*?)</option>', select)
    assert len(options) == 2
    assert options[0].startswith("worst: clip#2 (l1 ") and options[1].startswith("best: clip#0 (l1 ")
    assert "the worst and the best 2 of the 3 videos with samples" in text


def test_when_only_some_videos_have_samples_the_selector_says_so(hostile_results, tmp_path):
    # the bench saves samples for --sample-videos videos only: "worst:" must not claim the worst of every video
    import shutil

    from bench.results import sample_dir_name

    part = tmp_path / "part"
    shutil.copytree(hostile_results.root, part)
    for method_dir in (part / "samples").iterdir():
        shutil.rmtree(method_dir / sample_dir_name("clip#2"), ignore_errors=True)  # the worst video
    text = render_html(Results(part), plots=False)
    options = re.findall(r'<option value="video-\d">(.*?)</option>', text)
    assert options[0].startswith("worst sampled: ") and options[-1].startswith("best sampled: clip#0")
    assert "Samples exist for 2 of the 3 videos scored" in text and "--sample-videos" in text
