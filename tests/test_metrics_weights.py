"""Locating metric weights offline, and failing clearly when they cannot be fetched."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
import torch

from benchmark import weights
from benchmark.weights import NETWORKS, WeightsConfig


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    for name in NETWORKS:
        monkeypatch.delenv(weights.env_var(name), raising=False)
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.delenv(weights.DOWNLOAD_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "insightface"))
    return tmp_path


def test_from_env_reads_paths_and_policy(isolated, monkeypatch):
    monkeypatch.setenv("EVERANIMATE_BENCH_INCEPTION", "/somewhere/pt_inception.pth")
    monkeypatch.setenv("EVERANIMATE_BENCH_WEIGHTS", "/weights")
    monkeypatch.setenv("EVERANIMATE_BENCH_DOWNLOAD", "1")
    config = WeightsConfig.from_env()
    assert config.inception == "/somewhere/pt_inception.pth" and config.lpips_alex is None
    assert config.weights_dir == "/weights" and config.allow_download and not config.random_init
    assert WeightsConfig.from_env("/other").weights_dir == "/other"


def test_absent_weights_are_reported_without_touching_the_network_or_the_disk(isolated, monkeypatch):
    """Locating only looks at files: an offline run learns at once that a metric is unavailable, instead
    of waiting on a connection, and nothing is downloaded or created."""

    def no_network(*args, **kwargs):
        raise AssertionError("locating weights must not open a connection or download")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    config = WeightsConfig()
    locations = {name: config.locate(name) for name in NETWORKS}
    assert not any(location.present for location in locations.values())
    assert all(location.missing for location in locations.values())
    assert "checkpoints" in locations["inception"].missing
    assert list(isolated.iterdir()) == []


def test_explicit_file_weights_dir_and_library_cache_are_found(isolated):
    explicit = isolated / "my-inception.pth"
    torch.save({}, explicit)
    assert WeightsConfig(inception=str(explicit)).locate("inception").path == explicit
    assert "does not hold" in WeightsConfig(inception=str(isolated / "nope.pth")).locate("inception").missing

    folder = isolated / "weights"
    (folder / "videomae-base").mkdir(parents=True)
    (folder / "videomae-base" / "config.json").write_text("{}")
    torch.save({}, folder / NETWORKS["lpips_alex"].filename)
    config = WeightsConfig(weights_dir=str(folder))
    assert config.locate("lpips_alex").path == folder / NETWORKS["lpips_alex"].filename
    assert not config.locate("videomae").present  # a config without weights is not a model
    (folder / "videomae-base" / "model.safetensors").write_bytes(b"")
    assert config.locate("videomae").path == folder / "videomae-base"

    checkpoints = isolated / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({}, checkpoints / NETWORKS["lpips_vgg"].filename)
    location = WeightsConfig().locate("lpips_vgg")
    assert location.present and location.source == "library cache"


def test_fetch_fails_with_a_clear_message(isolated, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="could not download inception from https://github.com/mseitzer"):
        weights.fetch("inception", str(isolated / "dl"))
    assert weights.main(["fetch", "inception", "--dir", str(isolated / "dl")]) == 1


def test_listing_names_every_network(isolated, capsys):
    assert weights.main([]) == 0
    out = capsys.readouterr().out
    for name, spec in NETWORKS.items():
        assert name in out
    assert out.count("MISSING") == len(NETWORKS)
    assert NETWORKS["inception"].filename in out
