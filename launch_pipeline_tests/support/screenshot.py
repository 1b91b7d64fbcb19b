"""Screenshot of a Dagster UI page (by default the global asset lineage) in headless Chromium.

    python -m launch_pipeline_tests.support.screenshot --url http://127.0.0.1:3000 \
        --out data/reports/asset_lineage.png [--page asset_lineage|global_lineage]

Uses Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``):
``chromedriver`` is driven through the W3C WebDriver HTTP protocol with the standard library
(no Selenium needed), so the script can wait until the lineage graph has rendered before it takes
the picture. Without ``chromedriver`` it falls back to ``chromium --headless --screenshot`` with a
virtual-time budget."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

# UI pages: (path, texts that show the page has rendered)
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    # every asset upstream of the launch plan, grouped (raw -> cleaning -> features -> model ->
    # planning): the asset lineage
    "asset_lineage": (
        "/assets/launch_plan?view=lineage&lineageScope=upstream&lineageDepth=10",
        ("raw_events", "clean_events", "preference_model", "launch_plan"),
    ),
    # the "Lineage" entry of the sidebar: the asset groups and how they connect
    "global_lineage": ("/asset-groups", ("Global asset lineage", "cleaning", "planning")),
}
LINEAGE_PATH, DEFAULT_EXPECT = PAGES["asset_lineage"]
DEFAULT_OUT = Path("data/reports/asset_lineage.png")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

# Run in the page while waiting: close the first-visit "Join the Dagster community" dialog (its
# "Skip" button) and return the page text, SVG labels of the lineage graph included.
_POLL_SCRIPT = """
for (const b of document.querySelectorAll('button')) {
  if (b.innerText.trim() === 'Skip') { b.click(); }
}
return document.body ? document.body.textContent : '';
"""


class ScreenshotError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_chromedriver() -> str | None:
    return shutil.which("chromedriver")


def chromium_args(width: int, height: int, profile_dir: str) -> list[str]:
    args = [
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile_dir}",
        f"--window-size={width},{height}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return args


def _free_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _WebDriver:
    """The few W3C WebDriver commands needed, over HTTP to a local chromedriver."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.session: str | None = None

    def _call(self, method: str, path: str, payload: dict | None = None, timeout: float = 60):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ScreenshotError(f"webdriver {method} {path}: {exc.read()[:500]!r}") from exc
        return body.get("value")

    def ready(self) -> bool:
        try:
            return bool((self._call("GET", "/status", timeout=2) or {}).get("ready"))
        except (OSError, ScreenshotError, ValueError):
            return False

    def start(self, chromium: str, args: list[str]) -> None:
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                }
            }
        }
        self.session = self._call("POST", "/session", caps, timeout=120)["sessionId"]

    def cmd(self, method: str, path: str, payload: dict | None = None, timeout: float = 60):
        return self._call(method, f"/session/{self.session}{path}", payload, timeout)

    def quit(self) -> None:
        if self.session:
            with contextlib.suppress(Exception):
                self._call("DELETE", f"/session/{self.session}", timeout=20)
            self.session = None


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


def screenshot_with_webdriver(
    url: str,
    out: Path,
    *,
    expect: tuple[str, ...] = DEFAULT_EXPECT,
    width: int = 1600,
    height: int = 1300,
    timeout_s: float = 90.0,
    settle_s: float = 2.0,
) -> dict:
    chromium, driver = find_chromium(), find_chromedriver()
    if not chromium or not driver:
        raise ScreenshotError("chromium and chromedriver are needed (apt-get install chromium "
                              "chromium-driver)")  # fmt: skip
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="lp-chromium-") as profile:
        proc = subprocess.Popen(
            [driver, f"--port={port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wd = _WebDriver(port)
        try:
            t_end = time.monotonic() + 30
            while not wd.ready():
                if time.monotonic() > t_end or proc.poll() is not None:
                    raise ScreenshotError("chromedriver did not start")
                time.sleep(0.2)
            wd.start(chromium, chromium_args(width, height, profile))
            wd.cmd("POST", "/url", {"url": url}, timeout=timeout_s)
            t_end = time.monotonic() + timeout_s
            found: list[str] = []
            while time.monotonic() < t_end:
                text = wd.cmd("POST", "/execute/sync", {"script": _POLL_SCRIPT, "args": []})
                found = [e for e in expect if e in (text or "")]
                if len(found) == len(expect):
                    break
                time.sleep(1.0)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(base64.b64decode(wd.cmd("GET", "/screenshot")))
                raise ScreenshotError(
                    f"{url} did not show {list(expect)} within {timeout_s}s (found {found}); "
                    f"what it showed is in {out}"
                )
            time.sleep(settle_s)  # let the graph layout finish animating
            png = base64.b64decode(wd.cmd("GET", "/screenshot"))
            title = wd.cmd("GET", "/title")
        finally:
            wd.quit()
            _kill(proc)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return {
        "path": str(out),
        "bytes": len(png),
        "title": title,
        "found": found,
        "method": "webdriver",
    }


def screenshot_with_cli(
    url: str, out: Path, *, width: int = 1600, height: int = 1300, budget_ms: int = 20000
) -> dict:
    """Fallback without chromedriver: ``chromium --headless --screenshot``."""
    chromium = find_chromium()
    if not chromium:
        raise ScreenshotError("chromium is needed (apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lp-chromium-") as profile:
        cmd = [
            chromium,
            *chromium_args(width, height, profile),
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}",
            url,
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=budget_ms / 1000 + 60)
    return {"path": str(out), "bytes": out.stat().st_size, "method": "cli"}


def take_screenshot(
    base_url: str, out: Path = DEFAULT_OUT, page: str = "asset_lineage", **kw
) -> dict:
    """Screenshot of one of :data:`PAGES` (or of a path starting with ``/``)."""
    path, expect = PAGES.get(page, (page, ()))
    url = base_url.rstrip("/") + path
    if find_chromedriver():
        return screenshot_with_webdriver(url, Path(out), expect=expect, **kw)
    return screenshot_with_cli(url, Path(out))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:3000", help="the Dagster webserver")
    p.add_argument(
        "--page",
        default="asset_lineage",
        help=f"one of {sorted(PAGES)} or a UI path such as /runs (default: asset_lineage)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--timeout", type=float, default=90.0)
    args = p.parse_args(argv)
    try:
        info = take_screenshot(args.url, args.out, args.page, timeout_s=args.timeout)
    except (ScreenshotError, subprocess.SubprocessError, OSError) as exc:
        print(f"screenshot failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
