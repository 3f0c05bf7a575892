"""Fetching torchvision's ImageNet weights when absent (panet.base.download,
panet.models.encoders.fetch_imagenet_weights): from a local web server (tests/http_server.py),
never the internet. A good file lands in $TORCH_HOME/hub/checkpoints; a wrong, cut or refused
transfer is one line and leaves no file, not even a temporary one; a dry run downloads nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from http_server import GOOD_BYTES, GOOD_NAME, TRUNCATED_NAME, WRONG_NAME
from panet.base.download import DownloadError, download, named_digest
from panet.models import encoders
from panet.models.builder import build_model
from panet.models.encoders import ENCODERS, EncoderSpec, fetch_imagenet_weights
from panet.run import disk
from panet.run.experiments import compose_command
from panet.settings import ModelSettings, Settings

SERVER = Path(__file__).with_name("http_server.py")


@pytest.fixture(scope="module")
def server():
    """The base URL (ending in /) of tests/http_server.py, started for this module and
    stopped by its pid."""
    process = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        process.stdout.close()


@pytest.fixture
def checkpoints(tmp_path, monkeypatch, server) -> Path:
    """torch.hub's checkpoint folder under a fresh $TORCH_HOME (not made yet), the server as
    $PANET_TORCHVISION_URL, and encoders 'tiny', 'wrong' and 'cut' whose ImageNet files are the
    server's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("PANET_TORCHVISION_URL", server)
    for name, file in (("tiny", GOOD_NAME), ("wrong", WRONG_NAME), ("cut", TRUNCATED_NAME)):
        monkeypatch.setitem(ENCODERS, name, EncoderSpec(lambda weights, levels=(): None,
                                                        "a test file", file))
    return tmp_path / "torch" / "hub" / "checkpoints"


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("name,digest", [
    ("vgg16-397923af.pth", "397923af"), ("resnet101-63fe2227.pth", "63fe2227"),
    ("/some/where/resnet50-0676ba61.pth", "0676ba61"), ("vgg16.pth", None),
    ("my-weights.pth", None), ("short-abc12.pth", None), ("upper-397923AF.pth", None),
    ("x-397923af.tar.gz", None), ("deadbeef-dir/model.pth", None)])
def test_named_digest_is_the_hex_before_the_suffix(name, digest):
    assert named_digest(Path(name)) == digest


def test_an_absent_file_is_downloaded_into_torch_home(checkpoints, monkeypatch):
    path = fetch_imagenet_weights("tiny")
    assert path == checkpoints / GOOD_NAME and path.read_bytes() == GOOD_BYTES
    assert sorted(checkpoints.iterdir()) == [path]  # no temporary file left
    monkeypatch.setenv("PANET_TORCHVISION_URL", closed_port_url())
    assert fetch_imagenet_weights("tiny") == path  # present: no network


def test_the_base_url_may_lack_its_final_slash(checkpoints, server, monkeypatch):
    monkeypatch.setenv("PANET_TORCHVISION_URL", server.rstrip("/"))
    assert fetch_imagenet_weights("tiny").read_bytes() == GOOD_BYTES


def test_a_name_without_digest_is_downloaded_unchecked(server, tmp_path):
    path = download(server + GOOD_NAME, tmp_path / "plain.pth")
    assert path.read_bytes() == GOOD_BYTES


def assert_nothing_kept(error: pytest.ExceptionInfo, checkpoints: Path, *fragments: str) -> None:
    """The error is one line holding `fragments`, and the folder holds no file at all."""
    message = str(error.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


def test_content_that_does_not_match_its_name_is_not_kept(checkpoints, server):
    with pytest.raises(DownloadError) as error:
        fetch_imagenet_weights("wrong")
    assert_nothing_kept(error, checkpoints, "SHA-256", named_digest(Path(WRONG_NAME)),
                        f"put torchvision's file {WRONG_NAME} at {checkpoints / WRONG_NAME}",
                        server + WRONG_NAME)


def test_an_interrupted_transfer_is_not_kept(checkpoints, server):
    with pytest.raises(DownloadError) as error:
        fetch_imagenet_weights("cut")
    assert_nothing_kept(error, checkpoints, "stopped after 100 bytes of 1.3 KiB",
                        str(checkpoints / TRUNCATED_NAME), server + TRUNCATED_NAME)


def test_a_missing_file_on_the_server_is_one_line(checkpoints, server):
    with pytest.raises(DownloadError) as error:
        fetch_imagenet_weights("vgg16")
    assert_nothing_kept(error, checkpoints, "HTTP Error 404: Not Found",
                        str(checkpoints / "vgg16-397923af.pth"))


def test_an_unreachable_server_names_the_target_and_the_url(checkpoints, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv("PANET_TORCHVISION_URL", url)
    with pytest.raises(DownloadError) as error:
        fetch_imagenet_weights("tiny")
    assert_nothing_kept(error, checkpoints, f"cannot download {url}{GOOD_NAME} (",
                        f"at {checkpoints / GOOD_NAME} (from {url}{GOOD_NAME})",
                        "PANET_TORCHVISION_URL")


def test_the_cache_follows_torch_home(checkpoints):
    assert encoders.torchvision_cache() == checkpoints
    assert ModelSettings(encoder="resnet50").weights_path == checkpoints / "resnet50-0676ba61.pth"


def test_build_model_names_the_setting_when_the_download_fails(checkpoints):
    with pytest.raises(DownloadError, match=r"^model\.weights='imagenet': cannot download .*"
                       r"HTTP Error 404.*model\.weights=None to start from random weights$"):
        build_model(ModelSettings(encoder="vgg16"))


def refuse_downloads(monkeypatch) -> None:
    """Make any download fail the test."""
    def no_download(url, path):
        raise AssertionError(f"downloaded {url}")

    monkeypatch.setattr(encoders, "download", no_download)


def vgg16_settings() -> Settings:
    return Settings.from_config({**Settings.defaults(), "model": {"encoder": "vgg16"}})


def test_the_check_before_a_run_downloads_unless_it_is_a_dry_run(checkpoints, monkeypatch):
    """Without `fetch` (a dry run) an absent ImageNet file is no problem and nothing is
    fetched; with it, a failed download is the one problem line of model.weights."""
    assert disk._weights_problems(vgg16_settings(), fetch=True) == [
        f"model.weights='imagenet': cannot download {os.environ['PANET_TORCHVISION_URL']}"
        f"vgg16-397923af.pth (HTTP Error 404: Not Found); put torchvision's file "
        f"vgg16-397923af.pth at {checkpoints / 'vgg16-397923af.pth'} (from "
        f"{os.environ['PANET_TORCHVISION_URL']}vgg16-397923af.pth), or set PANET_TORCHVISION_URL "
        "to a base URL that holds it"]
    refuse_downloads(monkeypatch)
    assert disk._weights_problems(vgg16_settings(), fetch=False) == []


def test_a_planned_job_downloads_only_when_asked(checkpoints, tmp_path, monkeypatch):
    """planned_problems (scripts/reproduce.py's check; --dry-run passes fetch=False)."""
    composition = compose_command("train", [], {"model.encoder": "vgg16",
                                                "data.root": str(tmp_path / "absent")})
    weights = [line for line in disk.planned_problems(composition, False, fetch=True)
               if line.startswith("model.weights=")]
    assert len(weights) == 1 and "HTTP Error 404" in weights[0]
    refuse_downloads(monkeypatch)
    assert not any(line.startswith("model.weights=")
                   for line in disk.planned_problems(composition, False, fetch=False))


def test_a_path_given_is_never_downloaded(checkpoints, monkeypatch):
    refuse_downloads(monkeypatch)
    absent = checkpoints / "vgg16-397923af.pth"
    settings = Settings.from_config({**Settings.defaults(),
                                     "model": {"encoder": "vgg16", "weights": str(absent)}})
    assert disk._weights_problems(settings) == [
        f"model.weights='{absent}': no such file ({absent}); it must be torchvision's ImageNet "
        "file of 'vgg16', or None to start from random weights"]
