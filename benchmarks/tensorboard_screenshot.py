"""Screenshots of TensorBoard showing a short pruning run, for the README.

Trains a small CIFAR ResNet on a CIFAR-10 subset for a few epochs, then
prunes it with `PruningCallback` next to `keras.callbacks.TensorBoard` (the
way the library is meant to be watched), serves the logs with `tensorboard`
on 127.0.0.1 and photographs the dashboards with headless Chromium
(Debian: `apt-get install chromium`). It also writes the run's
channels-kept chart. Not part of CI; a few CPU minutes.

    python benchmarks/tensorboard_screenshot.py
    # -> docs/tensorboard_pruning.png    (scalars: pruning_steps/...)
    #    docs/tensorboard_gates.png      (gate histograms: gates/...)
    #    docs/channels_kept.png          (keras_relaxprune.reporting.charts)
"""

import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import keras_relaxprune as krp
from keras_relaxprune.reporting.charts import channels_kept_chart
from keras_relaxprune_apps import (
    cifar_resnet,
    load_cifar10,
    non_negative_int,
    open_fraction,
    positive_int,
)

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
# Dashboard views (TensorBoard 2.x URL fragments) -> file names. The
# scalars are the every-N-steps ones: a few epochs give smooth curves.
_SCALARS = "(remaining_flops|relaxed_flops|target|alive_channels|gate_temperature|threshold)$"
VIEWS = {
    "tensorboard_pruning.png": "#scalars&tagFilter="
    + urllib.parse.quote("pruning_steps/" + _SCALARS, safe="")
    + "&_smoothingWeight=0",
    "tensorboard_gates.png": "#histograms&tagFilter=gates%2F",
}


def train(log_dir, args):
    """Dense warm-up, then pruning with both callbacks; returns the gated model."""
    (x, y), (x_test, y_test) = load_cifar10(train_limit=args.train_limit, test_limit=500, seed=0)
    keras.utils.set_random_seed(0)
    dense = cifar_resnet(depth=args.depth, width=args.width, include_preprocessing=True)
    dense.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    dense.fit(x, y, batch_size=64, epochs=args.dense_epochs, verbose=2)
    gated = krp.add_gates(dense)
    gated.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    gated.fit(
        x,
        y,
        batch_size=64,
        epochs=args.epochs,
        verbose=2,
        validation_data=(x_test, y_test),
        callbacks=[
            keras.callbacks.TensorBoard(log_dir, write_graph=False),
            krp.PruningCallback(target=args.target, verbose=1, log_every_n_steps=5),
        ],
    )
    return gated


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(log_dir, port):
    """Starts `tensorboard` on a local port; returns (process, base URL)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            log_dir,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with opener.open(base + "data/plugin/text/tags", timeout=5) as response:
                if "pruning/report" in json.loads(response.read()).get("train", []):
                    return process, base
        except OSError:
            pass
        time.sleep(1)
    process.terminate()
    raise RuntimeError("tensorboard did not serve the pruning logs within 90 s")


def keep_outliers_in_scale(chromium, port, profile):
    """Unticks "Ignore outliers in chart scaling" for the dashboard's origin.

    TensorBoard keeps that setting in the browser's localStorage, not in the
    URL, so a page served from the same origin (127.0.0.1:port, before
    tensorboard starts there) sets it in the profile the screenshots use.
    """
    page = b'<script>localStorage.setItem("_ignoreYOutliers", "false")</script>'

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    with http.server.HTTPServer(("127.0.0.1", port), Page) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with tempfile.TemporaryDirectory() as scratch:
            screenshot(
                chromium,
                f"http://127.0.0.1:{port}/",
                os.path.join(scratch, "seed.png"),
                "200,200",
                profile,
            )
        server.shutdown()


def screenshot(chromium, url, path, size, profile):
    """Loads `url` in headless Chromium (local only) and saves a PNG."""
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            # Time for the dashboard to fetch its data and draw the charts.
            "--virtual-time-budget=20000",
            "--run-all-compositor-stages-before-draw",
            f"--screenshot={path}",
            f"--window-size={size}",
            url,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=180,
    )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=DOCS, help="directory of the images")
    parser.add_argument("--log-dir", default=None, help="keep the logs here")
    parser.add_argument(
        "--reuse-logs",
        action="store_true",
        help="photograph the logs already in --log-dir, no training",
    )
    parser.add_argument("--train-limit", type=positive_int, default=3000)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=positive_int, default=16)
    parser.add_argument("--dense-epochs", type=non_negative_int, default=2)
    parser.add_argument("--epochs", type=positive_int, default=6)
    parser.add_argument("--target", type=open_fraction, default=0.7)
    parser.add_argument("--window-size", default="1400,1100")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="relaxprune_tensorboard_")
    os.makedirs(args.out, exist_ok=True)
    if not args.reuse_logs:
        gated = train(log_dir, args)
        chart = channels_kept_chart(krp.pruning_report(gated), gated)
        with open(os.path.join(args.out, "channels_kept.png"), "wb") as f:
            f.write(chart)
    port, profile = free_port(), tempfile.mkdtemp(prefix="relaxprune_chromium_")
    keep_outliers_in_scale(args.chromium, port, profile)
    process, base = serve(log_dir, port)
    try:
        for name, fragment in VIEWS.items():
            screenshot(
                args.chromium,
                base + fragment,
                os.path.join(args.out, name),
                args.window_size,
                profile,
            )
            print("wrote", os.path.join(args.out, name))
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
    print("logs:", log_dir)


if __name__ == "__main__":
    main()
