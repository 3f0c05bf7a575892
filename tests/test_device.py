"""Device choice (panet/base/device.py): the CUDA rules checked without a GPU, by standing in for
torch's answers (how many GPUs, whether CUDA works) with monkeypatch."""

import pytest
import torch

import panet.base.device as device_module
from panet.base.device import (describe_device, device_line, resolve_device, set_tf32,
                          torchrun_problem, use_device)


@pytest.fixture
def gpus(monkeypatch):
    """Pretend torch sees `n` GPUs: gpus(n) patches availability, count and set_device; returns
    the devices set_device was called with."""
    selected = []

    def pretend(n):
        monkeypatch.setattr(device_module, "cuda_unavailable_reason",
                            lambda: None if n else "no GPU (pretended)")
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "set_device", selected.append)
        return selected

    return pretend


@pytest.fixture
def under_torchrun(monkeypatch):
    def launch(processes, nodes=1):
        monkeypatch.setenv("WORLD_SIZE", str(processes * nodes))
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    return launch


def test_more_processes_than_gpus_is_one_line(gpus, under_torchrun):
    gpus(1)
    under_torchrun(2)
    for device in ("auto", "cuda"):
        problem = torchrun_problem(device)
        assert "2 processes" in problem and "1 GPU" in problem
        assert "--nproc_per_node=1" in problem and "\n" not in problem
    assert torchrun_problem("cpu") is None
    assert "local rank" in torchrun_problem("cuda:1")
    gpus(2)
    assert torchrun_problem("auto") is None  # one GPU per process
    under_torchrun(2, nodes=4)  # 8 processes, 2 per machine
    assert torchrun_problem("cuda") is None


def test_the_config_check_refuses_it_before_any_work(gpus, under_torchrun):
    """The config hook runs before any run folder or model exists."""
    from conftest import load_experiment
    from panet.base.errors import ConfigError

    gpus(1)
    under_torchrun(2)
    with pytest.raises(ConfigError, match=r"torchrun started 2 processes on this machine but "
                                          r"torch sees 1 GPU\(s\)"):
        load_experiment("test").run("print_config", named_configs=["fast", "notrain"],
                                    options={"--loglevel": "ERROR"})


def test_auto_without_a_gpu_falls_back_to_the_cpu_and_says_why(gpus, capsys):
    gpus(0)
    resolved, reason = resolve_device("auto")
    assert resolved == torch.device("cpu") and reason == "no GPU (pretended)"
    assert use_device("auto") == torch.device("cpu")
    assert "device=auto: running on the CPU because no GPU (pretended)" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="device 'cuda' was asked for, but no GPU"):
        use_device("cuda")


def test_cuda_n_becomes_the_current_device(gpus):
    selected = gpus(2)
    assert use_device("cuda:1") == torch.device("cuda", 1)
    assert selected == [torch.device("cuda", 1)]
    assert use_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match="cuda:0..cuda:1"):
        use_device("cuda:2")


def test_tf32_is_off_unless_asked_for():
    try:
        use_device("cpu")
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        use_device("cpu", tf32=True)
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    finally:
        set_tf32(False)


def test_the_device_description_names_the_cpu_and_versions():
    record = describe_device(torch.device("cpu"), tf32=False)
    assert record["device"] == "cpu" and record["torch"] == torch.__version__
    assert record["name"] and record["threads"] == torch.get_num_threads()
    assert record["tf32"] is None  # no meaning on the CPU
    line = device_line(record)
    assert line.startswith("device: cpu (") and torch.__version__ in line
