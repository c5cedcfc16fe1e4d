"""Open a page in headless Chromium the way a reader's browser would, and say what it saw.

Two runs of Debian's ``chromium`` (installed by ``learntrack stack install``): ``--dump-dom`` after
the page's scripts ran (the report marks ``data-charts-rendered`` once its images decoded) with the
console on stderr, and ``--screenshot`` of the whole page.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")


@dataclass
class PageSeen:
    charts: int | None
    charts_rendered: int | None
    console_errors: list[str]  # every console message: the report writes none of its own
    distinct_colours: int


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: run `learntrack stack install` (make test does)"
    return found


def open_headless(page: Path, screenshot: Path, width: int = 1100, height: int = 4000) -> PageSeen:
    from PIL import Image

    url = page.resolve().as_uri()
    dom = subprocess.run([browser(), *_FLAGS, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1))) if body else {}
    shot = subprocess.run([browser(), *_FLAGS, f"--window-size={width},{height}", f"--screenshot={screenshot}", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    with Image.open(screenshot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    as_int = lambda v: int(v) if v is not None and v.isdigit() else None  # noqa: E731
    return PageSeen(as_int(attrs.get("data-charts")), as_int(attrs.get("data-charts-rendered")),
                    [m.group(1) for m in _CONSOLE.finditer(dom.stderr)], len(colours or []))
