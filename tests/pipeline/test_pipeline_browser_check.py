"""The browser check itself must be able to fail: a page with a script error is caught."""

from __future__ import annotations


def test_console_errors_are_detected(load_page, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><h1>broken</h1><script>console.log('hi'); notDefined();</script></body></html>")
    result = load_page(page, width=400, height=300)
    assert "hi" in result.console
    assert any("notDefined" in e for e in result.errors)


def test_blank_page_is_detected_as_blank(load_page, non_blank_fraction, tmp_path):
    page = tmp_path / "blank.html"
    page.write_text("<html><body></body></html>")
    result = load_page(page, width=400, height=300)
    assert result.errors == []
    assert non_blank_fraction(result.screenshot) < 0.001
