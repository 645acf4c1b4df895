"""The headless Chromium check the review's test relies on sees what it must: a request leaving the
file, a console error, an uncaught exception, a blank page."""
import io

import pytest
from PIL import Image, ImageStat

from tests import browser


@pytest.fixture(scope="module")
def executable():
    path = browser.find_browser()
    assert path, "needs Debian's chromium-headless-shell (or chromium): make test installs it"
    return path


def test_a_page_that_fetches_and_fails_is_caught(tmp_path, executable):
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.com/x.css">'
                    '<script src="http://cdn.example.com/x.js"></script></head><body><p>text</p>'
                    '<script>console.error("broken"); undefinedFunction();</script></body></html>')
    visit = browser.visit(page.as_uri(), executable)
    assert visit.requests[0] == page.as_uri()
    assert "https://cdn.example.com/x.css" in visit.requests and "http://cdn.example.com/x.js" in visit.requests
    texts = " ".join(entry["text"] for entry in visit.console if entry["level"] == "error")
    assert "broken" in texts and "undefinedFunction" in texts


def test_a_blank_page_has_no_variance(tmp_path, executable):
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    visit = browser.visit(page.as_uri(), executable, width=400, height=300)
    image = Image.open(io.BytesIO(visit.screenshot)).convert("L")
    assert image.size == (400, 300) and ImageStat.Stat(image).var[0] == 0
    assert visit.requests == [page.as_uri()] and visit.console == []
