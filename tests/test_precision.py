"""`precision` and `memory_format` (docs/precision.md): which ops run in bfloat16, float32 from
the encoder's output on, bf16 against fp32 within bfloat16's rounding (tests/tolerance.py), the
refusals, train.py / test.py (both evaluation paths) with the settings recorded and the warning
of a test in another precision, the Segmenter, predict.py, reproduce.py and bench_model.py.

bf16 runs on any CPU (emulated and slow without AVX512-BF16, but the models here are tiny): the
refusal is bypassed by standing in for the CPU check (`native_bf16`). Everything is pinned to
the CPU.
"""

import collections
import copy
import json
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import panet.base.device as device_module
from conftest import load_script
from panet.weights.checkpoint import checkpoint_contents, load_checkpoint
from panet.base.device import cpu_has_native_bf16, precision_problem
from panet.training import train_step
from panet.evaluation.feature_cache import DiskCache
from panet.inference import Segmenter
from panet.models.losses import panet_loss
from panet.models import PANet, build_encoder
from panet.models.numerics import Numerics
from conftest import load_experiment
from panet.run.identity import fingerprint
from panet.base.errors import ConfigError
from tolerance import (BF16_FEATURE_RTOL, BF16_LOGIT_ATOL, BF16_PIXEL_AGREEMENT, LOGIT_ATOL,
                       assert_logits_close, recorded_logits)

QUIET = {"--loglevel": "ERROR"}
TRAIN, TEST = load_experiment("train"), load_experiment("test")
SIZE = 65
# ops that may see bfloat16 under precision=bf16: the encoder's (small VGG and ResNet-50), their
# gradients, and the casts autocast inserts; nothing of the head, the losses or the metric
ENCODER_OPS = {"aten.convolution", "aten.convolution_backward", "aten.relu_",
               "aten.threshold_backward", "aten.max_pool2d_with_indices",
               "aten.max_pool2d_with_indices_backward", "aten.native_batch_norm",
               "aten.native_batch_norm_backward", "aten.add", "aten.add_", "aten._to_copy",
               "aten.detach"}
HEAD_OPS = {"aten.linalg_vector_norm", "aten.upsample_bilinear2d", "aten._log_softmax",
            "aten.nll_loss2d_forward", "aten.bmm", "aten.mean", "aten.div"}
pytestmark = [pytest.mark.filterwarnings("ignore:left out of the episodes"),
              pytest.mark.filterwarnings("ignore:classes never evaluated")]


@pytest.fixture
def native_bf16(monkeypatch):
    """Stand in for the CPU check: `native_bf16(False)` pretends a CPU without bfloat16."""
    def pretend(native: bool = True):
        monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
        monkeypatch.setattr(device_module, "cuda_unavailable_reason", lambda: "no GPU (pretend)")
    pretend()
    return pretend


def small_panet(seed=0, encoder="small"):
    torch.manual_seed(seed)
    return PANet(build_encoder(encoder))


def random_episode(seed=0, batch=2, shots=2):
    """support_images, fg, bg, query_images, query_labels of `batch` 1-way episodes."""
    g = torch.Generator().manual_seed(seed)
    support_images = torch.randn(batch, 1, shots, 3, SIZE, SIZE, generator=g)
    query_images = torch.randn(batch, 1, 3, SIZE, SIZE, generator=g)
    fg = torch.zeros(batch, 1, shots, SIZE, SIZE)
    fg[..., : SIZE // 2] = 1
    labels = torch.zeros(batch, 1, SIZE, SIZE, dtype=torch.long)
    labels[..., SIZE // 3:] = 1
    return support_images, fg, 1 - fg, query_images, labels


class DtypesSeen(TorchDispatchMode):
    """The floating dtypes each aten op was called with while active."""

    def __init__(self):
        super().__init__()
        self.seen = collections.defaultdict(set)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [t for t in tree_leaves((args, kwargs)) if torch.is_tensor(t)]
        self.seen[str(func.overloadpacket)].update(
            t.dtype for t in tensors if t.is_floating_point())
        return func(*args, **(kwargs or {}))


def relative_difference(got, expected):
    return float((got - expected).detach().abs().max() / expected.detach().abs().max())


# ---------------------------------------------------------------- the model

@pytest.mark.parametrize("encoder", ["small", "resnet50"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_which_ops_run_in_bfloat16(encoder, precision):
    """The docstring of panet.models.numerics, checked op by op over a training step."""
    model = small_panet(encoder=encoder).use_numerics(Numerics(precision))
    support_images, fg, bg, query_images, labels = random_episode(batch=1, shots=1)
    with DtypesSeen() as mode:
        out = model(support_images, fg, bg, query_images)
        panet_loss(out, labels, fg, bg, model.score).total.backward()
    in_bf16 = {op for op, dtypes in mode.seen.items() if torch.bfloat16 in dtypes}
    if precision == "fp32":
        assert not in_bf16
        return
    assert in_bf16 <= ENCODER_OPS, in_bf16 - ENCODER_OPS
    assert mode.seen["aten.convolution"] == {torch.bfloat16}  # inputs and weights cast
    assert {"aten.convolution_backward", "aten.relu_"} <= in_bf16
    assert all(mode.seen[op] <= {torch.float32, torch.float64} for op in HEAD_OPS), {
        op: mode.seen[op] for op in HEAD_OPS}


def test_bf16_outputs_and_losses_are_float32_and_close_to_fp32():
    reference = small_panet()
    model = copy.deepcopy(reference).use_numerics(Numerics("bf16"))
    support_images, fg, bg, query_images, labels = random_episode()
    expected, out = (m(support_images, fg, bg, query_images) for m in (reference, model))
    for name in ("logits", "logits_low", "query_features", "support_features", "prototypes"):
        assert getattr(out, name).dtype == torch.float32, name
        assert getattr(out, name).is_contiguous(), name
    assert relative_difference(out.query_features, expected.query_features) <= BF16_FEATURE_RTOL
    assert relative_difference(out.query_features, expected.query_features) > 1e-4  # bf16 ran
    assert float((out.logits - expected.logits).detach().abs().max()) <= BF16_LOGIT_ATOL
    agreement = (out.logits.argmax(2) == expected.logits.argmax(2)).double().mean()
    assert agreement >= BF16_PIXEL_AGREEMENT
    losses = [panet_loss(o, labels, fg, bg, model.score) for o in (expected, out)]
    for value in (losses[1].terms["seg"], losses[1].terms["align"], losses[1].total):
        assert value.dtype == torch.float32
    assert abs(float(losses[1].total.detach() / losses[0].total.detach()) - 1) <= BF16_FEATURE_RTOL
    losses[1].total.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_default_encodes_exactly_as_the_encoder_and_channels_last_within_rounding():
    model = small_panet().eval()
    images = random_episode()[3].flatten(0, 1)
    with torch.inference_mode():
        plain = model.encoder(images)
        assert torch.equal(model.encode(images), plain)  # the same call, unchanged
    model.use_numerics(Numerics(memory_format="channels_last"))
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters() if p.dim() == 4)
    with torch.inference_mode():
        nhwc = model.encode(images)
    assert nhwc.is_contiguous() and nhwc.dtype == torch.float32
    # other convolution kernels, float32 rounding: the contract's logit tolerance, relative to
    # the logits' range of 20
    assert relative_difference(nhwc, plain) <= LOGIT_ATOL / 20
    contiguous = small_panet(seed=1)  # its weights: channels_last tensors, equal values
    contiguous.load_state_dict(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(contiguous.state_dict().values(),
                                                 model.state_dict().values()))
    model.use_numerics(Numerics())
    assert all(p.is_contiguous() for p in model.parameters())


def test_unknown_names_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"precision='fp64': must be one of"):
        TRAIN.run("print_config", config_updates={"precision": "fp64"}, options=QUIET)


def test_loss_scaling_gives_the_unscaled_update():
    """fp16's GradScaler path, on the CPU in float32: a power-of-two scale is exact."""
    batch = dict(zip(("support_images", "support_fg", "support_bg", "query_images",
                      "query_labels"), random_episode(batch=1)), query_ids=[["q"]])
    models = [small_panet(), small_panet()]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    plain = train_step(models[0], optimizers[0], batch, align_weight=1.0)
    scaled = train_step(models[1], optimizers[1], batch, align_weight=1.0, scaler=scaler)
    assert plain == pytest.approx(scaled, rel=1e-6)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    state = checkpoint_contents(step=1, model=models[1], optimizer=optimizers[1],
                                scheduler=torch.optim.lr_scheduler.StepLR(optimizers[1], 1),
                                config={}, scaler=scaler)
    assert state["scaler"]["scale"] == 2.0 ** 8


# ---------------------------------------------------------------- refusals

def test_bf16_on_a_cpu_without_it_and_fp16_on_a_cpu_are_refused(native_bf16):
    assert precision_problem("bf16", "cpu") is None and precision_problem("fp32", "cpu") is None
    native_bf16(False)
    for device in ("cpu", "auto"):  # auto: no GPU here
        refused = precision_problem("bf16", device)
        assert refused.startswith("precision='bf16': this CPU") and "100x slower" in refused
        assert "avx512_bf16" in refused and "\n" not in refused
        assert precision_problem("fp16", device).startswith("precision='fp16': float16 autocast "
                                                            "is for CUDA devices")
    with pytest.raises(ConfigError, match=r"precision='bf16': .*about 100x slower"):
        TRAIN.run("print_config", config_updates={"precision": "bf16"}, options=QUIET)


def test_gpus_take_fp16_and_bf16_where_supported(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Old GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: False)
    assert precision_problem("fp16", "cuda") is None and precision_problem("fp16", "auto") is None
    assert precision_problem("bf16", "cuda:0").startswith("precision='bf16': this GPU (Old GPU)")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation: True)
    assert precision_problem("bf16", "cuda") is None


@pytest.mark.parametrize("flags, native", [({"avx2", "fma"}, False), ({"avx512_bf16"}, True),
                                           ({"amx_bf16", "avx2"}, True)])
def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset(flags))
    assert cpu_has_native_bf16() is native


def test_the_feature_cache_keeps_bf16_features_apart(tmp_path):
    dataset = SimpleNamespace(size=(SIZE, SIZE), source=None)
    folders = {precision: DiskCache(tmp_path, "0123456789abcdef0123", dataset,
                                    torch.device("cpu"), precision).folder.name
               for precision in ("fp32", "bf16")}
    assert folders["fp32"].startswith("0123456789abcdef-")  # the model key's first 16 digits
    assert folders["fp32"].endswith(f"-{SIZE}x{SIZE}-cpu")  # as before precision existed
    assert folders["bf16"] == folders["fp32"] + "-bf16"


def test_precision_is_in_the_settings_fingerprint_and_memory_format_is_not():
    config = {"precision": "bf16", "memory_format": "channels_last"}
    found = fingerprint(config, "test")
    assert found["precision"] == "bf16" and "memory_format" not in found
    assert fingerprint({}, "train")["precision"] == "fp32"  # records older than the key


# ---------------------------------------------------------------- Segmenter and scripts

def test_segmenter_in_bf16_agrees_with_fp32_and_refuses_without_it(folder_root, native_bf16):
    examples = folder_root / "examples"
    ways = [[(examples / "support.jpg", examples / "support_mask.png")]]
    queries = sorted((examples / "queries").iterdir())
    results, prototypes = {}, {}
    for precision, memory_format in (("fp32", "contiguous"), ("bf16", "channels_last")):
        segmenter = Segmenter(small_panet(), size=SIZE, device="cpu", precision=precision,
                              memory_format=memory_format)
        assert segmenter.model.numerics == Numerics(precision, memory_format)
        results[precision] = segmenter.segment(ways, queries)
        prototypes[precision] = segmenter.prototypes(ways)
    assert 1e-4 < relative_difference(prototypes["bf16"], prototypes["fp32"]) <= BF16_FEATURE_RTOL
    pixels = sum(r.labels.size for r in results["fp32"])
    agree = sum(int((a.labels == b.labels).sum())
                for a, b in zip(results["fp32"], results["bf16"]))
    assert agree >= BF16_PIXEL_AGREEMENT * pixels
    native_bf16(False)
    with pytest.raises(ValueError, match=r"^precision='bf16': this CPU"):
        Segmenter(small_panet(), size=SIZE, device="cpu", precision="bf16")


def test_predict_refuses_bf16_in_one_line(folder_root, native_bf16, capsys, tmp_path):
    native_bf16(False)
    examples = folder_root / "examples"
    with pytest.raises(SystemExit) as stopped:
        load_script("predict").main([
            "--weights", str(tmp_path / "vgg.pth"), "--way", str(examples / "support.jpg"),
            str(examples / "support_mask.png"), "--query", str(examples / "queries"),
            "--out", str(tmp_path / "out"), "--device", "cpu", "--precision", "bf16"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--precision bf16: this CPU" in error
    assert not (tmp_path / "out").exists()


def test_reproduce_adds_the_keys_to_every_job(tmp_path, capsys, native_bf16):
    reproduce = load_script("reproduce")
    argv = ["--table", "1", "--dry-run", "--out", str(tmp_path), "--precision", "bf16",
            "--memory-format", "channels_last"]
    assert reproduce.main(argv, run=None) == 0
    commands = [line.strip() for line in capsys.readouterr().out.splitlines()
                if line.startswith("    python")]
    assert len(commands) == 24
    assert all(c.endswith(" precision=bf16 memory_format=channels_last") for c in commands)
    assert reproduce.main(argv[:5], run=None) == 0  # without: the jobs as before
    assert "precision=" not in capsys.readouterr().out
    native_bf16(False)
    assert reproduce.main(argv, run=None) == 2
    assert "precision='bf16': this CPU" in capsys.readouterr().err


# ---------------------------------------------------------------- train.py and test.py

def train(root, out, precision="bf16", **updates):
    """train.py in `precision` (None: not given) on the synthetic set, 4 steps; its final.pt."""
    if precision is not None:
        updates["precision"] = precision
    train_keys = {k: updates.pop(k) for k in ("steps", "resume") if k in updates}
    run = TRAIN.run(named_configs=["synthetic", "fast"], options=QUIET, config_updates={
        "device": "cpu", "data": {"root": str(root)},
        "train": {"output_dir": str(out), **train_keys}, **updates})
    assert run.status == "COMPLETED"
    return out / "checkpoints" / "final.pt"


def evaluate(checkpoint, out, monkeypatch, **updates):
    """results.json and the logits of every query of a test of `checkpoint`."""
    encode = updates.pop("encode", "image")
    with recorded_logits(monkeypatch) as logits:
        run = TEST.run(named_configs=["fast"], options=QUIET, config_updates={
            "device": "cpu", "test": {"checkpoint": str(checkpoint), "output_dir": str(out),
                                      "encode": encode}, **updates})
    assert run.status == "COMPLETED"
    return json.loads((out / "results.json").read_text()), dict(logits)


@pytest.fixture(scope="module")
def trained_bf16(synthetic_root, tmp_path_factory):
    """4 steps of train.py with precision=bf16 and memory_format=channels_last."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
        return train(synthetic_root, tmp_path_factory.mktemp("bf16"),
                     memory_format="channels_last")


def test_the_checkpoint_records_how_it_was_trained(trained_bf16):
    config = load_checkpoint(trained_bf16)["config"]
    assert (config["precision"], config["memory_format"]) == ("bf16", "channels_last")


@pytest.mark.parametrize("encode", ["image", "episode"])
def test_both_test_paths_run_in_the_precision_asked_and_record_it(
        trained_bf16, tmp_path, monkeypatch, capfd, native_bf16, encode):
    capfd.readouterr()
    fp32, fp32_logits = evaluate(trained_bf16, tmp_path / "fp32", monkeypatch, encode=encode)
    warned = [line for line in capfd.readouterr().err.splitlines() if "was trained with" in line]
    assert warned == [f"warning: {trained_bf16} was trained with precision=bf16 but is tested "
                      "with precision=fp32 (add precision=bf16 to test it as it was trained)"]
    assert (fp32["setting"]["precision"], fp32["setting"]["memory_format"]) == (
        "fp32", "contiguous")
    bf16, bf16_logits = evaluate(trained_bf16, tmp_path / "bf16", monkeypatch, encode=encode,
                                 precision="bf16", memory_format="channels_last")
    assert "was trained with" not in capfd.readouterr().err
    assert (bf16["setting"]["precision"], bf16["setting"]["memory_format"]) == (
        "bf16", "channels_last")
    assert bf16["config"]["precision"] == "bf16"
    # bf16 ran: beyond float32 rounding (a channels_last float32 encoder stays within it)
    assert max(float((bf16_logits[key] - fp32_logits[key]).abs().max())
               for key in fp32_logits) > LOGIT_ATOL
    assert_logits_close(bf16_logits, fp32_logits, BF16_LOGIT_ATOL, BF16_PIXEL_AGREEMENT)


def test_resume_keeps_the_precision_and_refuses_another(synthetic_root, trained_bf16, tmp_path,
                                                        native_bf16):
    half = train(synthetic_root, tmp_path / "half", steps=2, memory_format="channels_last")
    resumed = train(synthetic_root, tmp_path / "resumed", precision=None,
                    resume=str(half.with_name("last.pt")))  # neither key given: the checkpoint's
    state, straight = load_checkpoint(resumed), load_checkpoint(trained_bf16)
    assert (state["config"]["precision"], state["config"]["memory_format"]) == (
        "bf16", "channels_last")
    for key, value in straight["model"].items():  # the same computation on the same machine
        assert torch.equal(state["model"][key], value), key
    with pytest.raises(ConfigError, match=r"precision='fp32': the checkpoint was trained with "
                                          r"'bf16'"):
        train(synthetic_root, tmp_path / "other", precision="fp32",
              resume=str(half.with_name("last.pt")))


@pytest.mark.parametrize("precision, native, said", [
    ("fp16", True, "float16 autocast is for CUDA devices"),
    ("bf16", False, "this CPU"),
])
def test_bench_refuses_what_the_config_key_refuses(precision, native, said, native_bf16, capsys):
    native_bf16(native)
    with pytest.raises(SystemExit) as stopped:
        load_script("bench_model").main(["--device", "cpu", "--size", str(SIZE),
                                         "--precision", precision])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"--precision {precision}: {said}" in err and "use precision=" in err, err


def test_bench_compares_a_trained_model_on_a_real_episode(trained_bf16, synthetic_root, capsys,
                                                          native_bf16):
    load_script("bench_model").main([
        "--device", "cpu", "--size", str(SIZE), "--repeats", "1", "--precision", "bf16",
        "--memory-format", "channels_last", "--checkpoint", str(trained_bf16.parent.parent),
        "--data-root", str(synthetic_root), "--json"])
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (found["encoder"], found["precision"], found["memory_format"]) == (
        "small", "bf16", "channels_last")
    rows = {row["measure"]: row for row in found["rows"]}
    assert rows["training step"]["ratio"] > 0 and rows["inference"]["ratio"] > 0
    assert rows["training step"]["target"] == 0.55 and rows["inference"]["target"] == 0.65
    assert 0 < found["logits_max_abs_diff"] <= BF16_LOGIT_ATOL
    assert found["argmax_agreement"] >= BF16_PIXEL_AGREEMENT
    memory = rows["train-step peak memory (above pre-step)"]
    assert memory["reference"] > 0 and memory["ratio"] > 0 and memory["unit"] == "GiB"
