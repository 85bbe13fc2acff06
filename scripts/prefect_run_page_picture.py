"""Take the pictures of the Prefect flow run page that docs/prefect.md shows (issue #16).

RayDog's Prefect task runner puts two artifacts on a flow run: a link to the Ray dashboard and the
cluster's post-mortem. The docs show them as a user sees them, so this script makes them for real:
it starts a Prefect server with its UI on a free loopback port (in a temporary PREFECT_HOME, with a
temporary RAYDOG_HOME), runs a small flow on `RayDogTaskRunner()` (a local RayDog cluster: a head and
one worker) against it, and has headless Chromium take three pictures into docs/images/: the run's
page on its Artifacts tab, the post-mortem artifact and the dashboard link artifact. It stops the
server and the browser it started; the runner shuts its own cluster down. Re-run it (about 40 s) when
the UI or the artifacts change:

    .nox/prefect/bin/python scripts/prefect_run_page_picture.py

It needs `chromium` on PATH (Debian: `apt-get install -y --no-install-recommends chromium`) and the
prefect environment (`nox -s prefect --install-only`). A docs tool, not part of the test suite.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "docs" / "images"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "headless Chromium is needed for the screenshots and none was found on PATH "
    f"(looked for {', '.join(BROWSERS)}); on Debian or Ubuntu install it with "
    "`apt-get install -y --no-install-recommends chromium`"
)


def find_browser() -> str:
    """The first Chromium-like browser on PATH; a clear message on how to get one otherwise."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit(f"error: {INSTALL_HINT}")


def free_port() -> int:
    """A port free on loopback now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`prefect server start` with the UI, in its own process group so that stopping it stops all of it."""
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_healthy(server: subprocess.Popen[bytes], base: str, log: Path, timeout_s: float = 180.0) -> None:
    """Until the API answers and the UI's page is served (the first start migrates its database)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"error: the Prefect server exited ({server.returncode}); its log:\n{log.read_text()}")
        try:
            with (
                urllib.request.urlopen(f"{base}/api/health", timeout=5) as health,
                urllib.request.urlopen(f"{base}/", timeout=5) as page,
            ):
                if health.status == 200 and b"<html" in page.read().lower():
                    return
        except OSError:
            pass
        time.sleep(1)
    sys.exit(f"error: the Prefect server did not answer at {base} within {timeout_s:.0f} s; see {log}")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), then SIGKILL."""
    if server.poll() is not None:
        return
    group = server.pid  # start_new_session: the group's id is the server's PID, and it is still ours
    os.killpg(group, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(group, signal.SIGKILL)
        server.wait(timeout=10)


def run_flow() -> tuple[str, dict[str, str]]:
    """A small fan-out on `RayDogTaskRunner()` against the server; its flow run's id and the ids of its
    two artifacts ("dashboard", "post-mortem"). Imported here: Prefect reads its settings from the environment set up by `main`."""
    from prefect import flow, get_client, task

    from raydog_prefect import RayDogTaskRunner
    from raydog_prefect.post_mortem import ARTIFACT_KEY as POST_MORTEM_KEY

    @task
    def square(item: int) -> int:
        """One small Ray task."""
        return item * item

    @flow(name="raydog-fan-out", task_runner=RayDogTaskRunner(), log_prints=True)
    def raydog_fan_out(items: int = 6) -> int:
        """A few tasks on the run's RayDog cluster, so the run has task runs, logs and artifacts."""
        total = sum(square.map(range(items)).result())
        print(f"sum of squares of 0..{items - 1}: {total}")
        return total

    state = raydog_fan_out(return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    if not state.is_completed():
        sys.exit(f"error: the flow run {flow_run_id} ended {state.type.value}: {state.message}")

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    # Prefect stores a link artifact as markdown with no key: the dashboard's is told by its description.
    found = {
        "dashboard": [a for a in artifacts if (a.description or "").startswith("The Ray dashboard")],
        "post-mortem": [a for a in artifacts if a.key == POST_MORTEM_KEY],
    }
    for what, matches in found.items():
        if len(matches) != 1:
            sys.exit(f"error: the flow run {flow_run_id} has {len(matches)} {what} artifacts, not 1")
    return flow_run_id, {what: str(matches[0].id) for what, matches in found.items()}


CLICK_TAB = """(() => {
  const tab = [...document.querySelectorAll('[role=tablist] > *')].find(e => e.textContent.trim() === %s);
  if (!tab || tab.offsetParent === null) return false;
  tab.click();
  return true;
})()"""


class Browser:
    """Headless Chromium driven through its DevTools protocol (on loopback), one page at a time.

    Driven rather than `chromium --screenshot=FILE URL`: the flow run page drops `?tab=Artifacts` from
    its URL (the tab is hidden until the run is loaded, and the page falls back to its first tab), so the
    tab has to be clicked; and a picture is taken once the page shows what it should, not after a fixed
    budget of virtual time, which caught the run's graph mid-animation.
    """

    def __init__(self, executable: str, profile: Path, width: int, height: int) -> None:
        self.width, self.height = width, height
        profile.mkdir(parents=True, exist_ok=True)
        port_file = profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        command = [
            executable,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--no-first-run",
            "--force-device-scale-factor=1",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",  # Chromium picks a free one and writes it to DevToolsActivePort
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.socket: Any = None
        try:
            self._connect(executable, port_file)
        except BaseException:
            self.close()  # a browser that did not come up is not left behind
            raise

    def _connect(self, executable: str, port_file: Path) -> None:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                sys.exit(f"error: {Path(executable).name} did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")

        from websockets.sync.client import connect  # a dependency of Prefect

        self.socket = connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10)
        self.ids = iter(range(1, 1_000_000))
        # The viewport itself, whatever room the headless window keeps for itself.
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, **params: object) -> dict[str, Any]:
        """One DevTools command and its result (the events sent in between are skipped)."""
        own = next(self.ids)
        self.socket.send(json.dumps({"id": own, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == own:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message["result"])

    def evaluate(self, expression: str) -> object:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def until(self, expression: str, what: str, url: str, timeout_s: float = 45) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                sys.exit(f"error: {what} did not show within {timeout_s:.0f} s on {url}")
            time.sleep(0.5)

    def screenshot(
        self, url: str, target: Path, shows: list[str], tab: str | None = None, height: int | None = None
    ) -> None:
        """`url` (after clicking its `tab`), once every text of `shows` is on the page, as a PNG; only
        its top `height` pixels if given (a short page need not carry an empty screen)."""
        self.call("Page.navigate", url=url)
        if tab is not None:
            self.until(CLICK_TAB % json.dumps(tab), f"the {tab!r} tab", url)
        for text in shows:
            self.until(f"document.body.innerText.includes({json.dumps(text)})", repr(text), url)
        time.sleep(3)  # the last requests, and the run graph's animation
        clip = {"x": 0, "y": 0, "width": self.width, "height": height or self.height, "scale": 1}
        shot = self.call("Page.captureScreenshot", format="png", clip=clip)
        target.write_bytes(base64.b64decode(shot["data"]))
        shown = target.relative_to(REPO) if target.is_relative_to(REPO) else target
        print(f"{shown}: {target.stat().st_size // 1024} KiB ({url}{f', {tab} tab' if tab else ''})")

    def close(self) -> None:
        """The browser's own process group (started in a new session), SIGTERM then SIGKILL."""
        if self.socket is not None:
            self.socket.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs go (default docs/images)")
    parser.add_argument("--size", default="1440x1000", help="the pictures' size, WIDTHxHEIGHT")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, homes)")
    args = parser.parse_args()
    executable = find_browser()
    width, height = (int(side) for side in args.size.split("x"))
    args.out.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="raydog-run-page-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "PREFECT_HOME": str(work / "prefect"),
            "PREFECT_API_URL": f"{base}/api",
            "PREFECT_UI_ENABLED": "true",
            "PREFECT_UI_API_URL": f"{base}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "RAYDOG_HOME": str(work / "raydog"),
        }
    )
    # The server gets no PREFECT_API_URL: it is the API, not a client of one.
    server_env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    server_log = work / "prefect-server.log"
    started = time.monotonic()
    server = start_server(port, server_env, server_log)
    try:
        wait_healthy(server, base, server_log)
        print(f"Prefect server and UI at {base} (PID {server.pid}), in {time.monotonic() - started:.0f} s")
        flow_run_id, artifacts = run_flow()
        print(f"flow run {flow_run_id}, artifacts: {artifacts}")
        run_page = f"{base}/runs/flow-run/{flow_run_id}"
        browser = Browser(executable, work / "chromium", width, height)
        try:
            browser.screenshot(
                run_page,
                args.out / "prefect-flow-run-artifacts.png",
                shows=["raydog-post-mortem", "The Ray dashboard of"],
                tab="Artifacts",
            )
            browser.screenshot(
                f"{base}/artifacts/artifact/{artifacts['post-mortem']}",
                args.out / "prefect-post-mortem-artifact.png",
                shows=["RayDog post-mortem:", "Timeline", "Bundle:"],
            )
            browser.screenshot(
                f"{base}/artifacts/artifact/{artifacts['dashboard']}",
                args.out / "prefect-dashboard-link-artifact.png",
                shows=["Ray dashboard of"],
                height=height * 7 // 20,
            )
        finally:
            browser.close()
    finally:
        stop_server(server)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
