"""The report page in a real headless browser: every image loads (skipped where no Chromium is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import run_command

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PROBE = """<script>
window.addEventListener("load", () => {
  const sizes = Array.from(document.images).map(img => img.naturalWidth);
  document.body.setAttribute("data-image-widths", sizes.join(","));
});
</script>"""


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_every_image_of_the_report_page_loads_in_headless_chromium(tmp_path):
    fit = run_command("fit", "--config", "hexagon_patch.yaml", "--trainer.max_steps=30", cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-2000:]
    run = tmp_path / "runs" / "hexagon_patch" / "version_0"
    # Paths are shown relative to where the command ran; the console may wrap a long one.
    assert f"report page: {run.relative_to(tmp_path) / 'report' / 'index.html'}" in "".join(fit.stdout.splitlines())
    index = run / "report" / "index.html"
    assert index.is_file()
    # The page itself, with a probe that records each image's natural width once everything loaded.
    probe = index.with_name("probe.html")
    probe.write_text(index.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r'data-image-widths="([\d,]*)"', result.stdout)
    assert match, result.stdout[-2000:] + result.stderr[-2000:]
    widths = [int(w) for w in match.group(1).split(",") if w]
    n_images = len(re.findall(r"<img ", index.read_text()))
    assert len(widths) == n_images >= 5
    assert all(w > 0 for w in widths), widths
