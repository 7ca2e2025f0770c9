"""The HTML report, opened in headless Chromium: it loads with no console error and no network
request, every plot is there with a non-blank image, and a screenshot is kept as a test artifact.
Where no browser is installed the browser checks skip, except on CI (CI=true), where they fail."""

import os
import shutil
from pathlib import Path

import pytest

from steepest.cli import main

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts"
QUICK = ["--set", "trainer.max_steps=30", "--set", "trainer.max_epochs=null", "--set", "trainer.log_every_n_steps=5",
         "--set", "trainer.eval_every_n_steps=10", "-q"]
IMAGE_RUN = ["mnist_cnn", "--set", "data.subset=400", "--set", "model.channels=[8]", "--set", "data.augment={crop_pad: 2, erase_prob: 0.5}",
             "--set", "data.split=[0.9, 0.05, 0.05]"]

PIXELS = """() => Array.from(document.images).map(img => {
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data; let lo = 765, hi = 0;
    for (let i = 0; i < d.length; i += 16) { const v = d[i] + d[i + 1] + d[i + 2]; lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return {alt: img.alt, width: img.naturalWidth, contrast: hi - lo};
})"""


def open_in_chromium(path: Path, screenshot: Path) -> tuple[list[dict], list[str], list[str]]:
    """(images with their size and contrast, console errors, requests other than the file) of the page."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        message = "the report test needs Chromium (apt-get install chromium) and playwright (the dev extra)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        images = page.evaluate(PIXELS)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return images, errors, [u for u in requests if u != path.resolve().as_uri() and not u.startswith("data:")]


def test_report_of_an_image_run_in_chromium(tmp_path, shared_data, capsys, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.delenv("STEEPEST_NO_REPORT", raising=False)
    assert main(["train", *IMAGE_RUN, "--run-dir", str(run), *QUICK]) == 0
    assert (run / "report.html").exists()  # train writes it
    assert main(["doctor", "--run-dir", str(run)]) in (0, 1)  # a doctor.json beside the run
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    images, errors, requests = open_in_chromium(run / "report.html", ARTIFACTS / "report.png")
    assert not errors and not requests, (errors, requests)
    alts = {i["alt"] for i in images}
    assert {"learning curves", "hyperparameters", "gradients", "throughput", "confusion matrix", "wrong samples",
            "augmented samples"} <= alts, alts
    assert all(i["width"] > 100 and i["contrast"] > 100 for i in images), images
    assert "Doctor" in html and "Most confidently wrong" in html


def test_report_of_two_runs_overlays_them_and_diffs_their_recipes(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--run-dir", str(a), *QUICK]) == 0
    assert main(["train", "--run-dir", str(b), *QUICK, "--set", "optimizer={name: lion}"]) == 0
    out = tmp_path / "ab.html"
    assert main(["report", str(a), str(b), "-o", str(out)]) == 0
    html = out.read_text()
    assert "optimizer.name" in html and "lion" in html and "optimizer.lr" in html
    images, errors, requests = open_in_chromium(out, ARTIFACTS / "report-two-runs.png")
    assert not errors and not requests
    assert [i["alt"] for i in images] == ["learning curves of every run"] and images[0]["contrast"] > 100


def test_report_of_something_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err


def test_report_of_a_damaged_run_says_what_it_could_not_read(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), *QUICK, "--no-report"]) == 0
    (run / "summary.json").write_text("{not json")
    assert main(["report", str(run), "-o", str(tmp_path / "a.html")]) == 0
    assert "unreadable summary.json" in (tmp_path / "a.html").read_text()
    (run / "summary.json").unlink()
    (run / "model.safetensors").unlink()
    assert main(["report", str(run), "-o", str(tmp_path / "b.html")]) == 0
    assert "interrupted at step 30" in (tmp_path / "b.html").read_text()  # as `steepest runs` says
    (run / "metrics.db").write_text("garbage")
    assert main(["report", str(run), "-o", str(tmp_path / "c.html")]) == 0
    assert "metrics.db cannot be read" in (tmp_path / "c.html").read_text()
