"""The ganx.report pages as their reader sees them: opened in headless Chromium (Selenium drives the system's chromium
and chromedriver), every sample grid and curve loads and is drawn, and the browser logs no errors. Where no browser is
installed the test skips and names the packages."""

import io
import json
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import FAST, TOY, cli_in_process, train_in_process
from PIL import Image

from ganx.report import run_page

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BROWSER_PACKAGES = "apt-get install chromium chromium-driver"


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium in a laptop-sized window, keeping the browser console's messages."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(f"no browser to open the report in (chromium: {browser}, chromedriver: {driver}); "
                    f"`{BROWSER_PACKAGES}` (Debian/Ubuntu) installs both")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # Chromium refuses to start as root (containers, CI) with its sandbox; Docker's /dev/shm is too small for it.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path given: Selenium Manager would otherwise look for one online.
    session = webdriver.Chrome(options=options, service=Service(driver))
    yield session
    session.quit()


class OpenedPage(NamedTuple):
    images: list[str]  # URLs, resolved against the page's
    links: list[str]
    problems: list[str]


def open_page(browser, page: Path) -> OpenedPage:
    """Open ``page`` and find what a reader would see go wrong: an image that did not load, takes no space or is drawn
    as one flat colour, a page wider than the window, an error in the browser console (a failed load, a script error)."""
    from selenium.webdriver.common.by import By

    browser.get_log("browser")  # what earlier pages logged
    browser.get(page.as_uri())
    images, problems = [], []
    for image in browser.find_elements(By.TAG_NAME, "img"):
        url = image.get_attribute("src")
        images.append(url)
        if not browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image):
            problems.append(f"{url} did not load")
        elif image.size["width"] == 0 or image.size["height"] == 0:
            problems.append(f"{url} takes no space on the page")
        else:
            darkest, brightest = Image.open(io.BytesIO(image.screenshot_as_png)).convert("L").getextrema()
            if darkest == brightest:
                problems.append(f"{url} is drawn as one flat colour")
    page_width, window_width = browser.execute_script("return [document.documentElement.scrollWidth, innerWidth]")
    if page_width > window_width:
        problems.append(f"{page.name} is {page_width}px wide in a {window_width}px window (scrolls sideways)")
    problems += [f"console: {entry['message']}" for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    links = [link.get_attribute("href") for link in browser.find_elements(By.TAG_NAME, "a")]
    return OpenedPage(images, links, problems)


def test_report_pages_show_every_sample_grid_and_curve_in_a_browser(tmp_path: Path, chromium):
    sweep = tmp_path / "sweep"
    train_in_process(*TOY, *FAST, f"hydra.run.dir={sweep / '0'}", cwd=tmp_path)
    shutil.copytree(sweep / "0", sweep / "1")  # the sweep page only needs a second run dir
    cli_in_process("ganx.report", str(sweep), cwd=tmp_path)  # the sweep's page and a page per run

    sweep_page = open_page(chromium, sweep / "report" / "index.html")
    assert sweep_page.problems == []
    runs = [sweep / "0", sweep / "1"]
    assert sweep_page.links == [(run / "report" / "index.html").as_uri() for run in runs]
    for run in runs:
        run_page = open_page(chromium, run / "report" / "index.html")
        assert run_page.problems == []
        grids = sorted((run / "samples").glob("*.png"))
        assert len(grids) == 2 and run_page.images == [p.as_uri() for p in [run / "report" / "curves.png", *grids]]


def test_a_run_page_says_which_features_its_metrics_were_computed_on(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    row = {"generator_steps": 2, "val/fid": 3.0, "protocol": {"features": "effnet_lite0_128_blur2:579344248a93"}}
    (run / "evaluations.jsonl").write_text(json.dumps(row) + "\n")
    page = run_page(run).read_text()
    assert "Metrics computed on: <code>effnet_lite0_128_blur2</code>" in page


def test_a_run_page_reads_the_evaluation_log_once(tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"generator_steps": s, "val/fid": 5.0 - s, "protocol": {"features": "domain:abc:123"}} for s in (2, 4)]
    (run / "evaluations.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    reads, read_text = [], Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (reads.append(self.name), read_text(self, *a, **k))[1])
    page = run_page(run).read_text()
    assert reads.count("evaluations.jsonl") == 1
    assert "<code>domain</code>" in page and (run / "report" / "curves.png").is_file()  # the log drew both
