"""`tfxline monitor --serve`: re-runs the monitoring every interval and serves the gauges at /metrics for
Prometheus (and, with --textfile, writes them for node-exporter's textfile collector)."""
import http.server
import sys
import threading
import time
from typing import Callable, Optional

from monitoring import report as reports
from monitoring.monitor import MonitorError, Report

METRICS_PATH = "/metrics"


class _State:
    def __init__(self, model: str):
        self.lock = threading.Lock()
        self.text = reports.prometheus_text(None, model, up=False)


def _handler(state: _State):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            if self.path.split("?", 1)[0] != METRICS_PATH:
                self.send_error(404, f"the metrics are at {METRICS_PATH}")
                return
            with state.lock:
                body = state.text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def serve(run_once: Callable[[], Report], model: str, port: int, interval: float, host: str = "0.0.0.0",
          textfile: Optional[str] = None, rounds: Optional[int] = None) -> int:
    """Runs until interrupted (or for `rounds` rounds); a failing round sets tfxline_monitor_up to 0."""
    state = _State(model)
    server = http.server.ThreadingHTTPServer((host, port), _handler(state))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    print(f"tfxline monitor: serving the gauges at http://{host}:{server.server_address[1]}{METRICS_PATH}, "
          f"every {interval:g} s", flush=True)
    done = 0
    try:
        while rounds is None or done < rounds:
            started = time.time()
            try:
                result = run_once()
                text = reports.prometheus_text(result, model, up=True, last_run=time.time())
                drifted = sum(len(c.drifted) for v in result.versions for c in v.comparisons)
                print(f"tfxline monitor: {time.strftime('%H:%M:%S')} {result.rows:,} requests, "
                      f"{drifted} drifted feature check(s)", flush=True)
            except MonitorError as error:
                text = reports.prometheus_text(None, model, up=False, last_run=time.time())
                print(f"tfxline monitor: {error}", file=sys.stderr, flush=True)
            with state.lock:
                state.text = text
            if textfile:
                reports.write_textfile(text, textfile)
            done += 1
            time.sleep(max(0.0, interval - (time.time() - started)))
    finally:
        server.shutdown()
    return reports.NO_DRIFT
