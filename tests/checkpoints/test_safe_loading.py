"""Weight files never run code: hostile pickles are refused, broken files give clear errors.

Every container the tool reads is covered: torch zip archives (`.pth`, Lightning `.ckpt`),
legacy torch files, raw pickles, TorchScript archives and safetensors.
"""

from __future__ import annotations

import ast
import collections
import io
import os
import pickle
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from inpaint_cli.checkpoints.containers import (
    ForeignObject,
    RestrictedUnpickler,
    read_checkpoint,
    save_converted,
    unwrap_state_dict,
)
from inpaint_cli.checkpoints.loading import convert_checkpoint, network_from_checkpoint, resolve_checkpoint
from inpaint_cli.cli.app import app
from inpaint_cli.detect.network import NetworkDetector
from inpaint_cli.errors import CheckpointError
from inpaint_cli.models import FAMILIES, classical, weighted_families

DATA = Path(__file__).resolve().parents[1] / "data"
BUNDLED = Path(__file__).resolve().parents[2] / "inpaint_cli" / "bundled"
BUNDLED_DETECTOR = BUNDLED / "scratch-tiny.safetensors"


class CreatesFile:
    """Unpickling this calls `open(marker, "w")`: code execution that leaves a trace."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.randn(4)}


def write_hostile_zip(path: Path, marker: Path) -> None:
    torch.save({"model": small_state(), "payload": CreatesFile(marker)}, path)


def write_hostile_legacy(path: Path, marker: Path) -> None:
    torch.save(
        {"model": small_state(), "payload": CreatesFile(marker)}, path, _use_new_zipfile_serialization=False
    )


def write_hostile_raw_pickle(path: Path, marker: Path) -> None:
    # No tensors: a plain pickle stores those through torch.storage._load_from_bytes, itself refused.
    path.write_bytes(pickle.dumps({"epoch": 1, "payload": CreatesFile(marker)}, protocol=2))


def write_hostile_torchscript(path: Path, marker: Path) -> None:
    """A TorchScript-shaped archive whose module record is the hostile pickle."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("big-lama/data.pkl", pickle.dumps(CreatesFile(marker), protocol=2))
        archive.writestr("big-lama/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("big-lama/code/__torch__.py", "def forward(self): ...\n")
        archive.writestr("big-lama/version", "3\n")


@pytest.mark.parametrize(
    ("writer", "refusal"),
    [
        (write_hostile_zip, "refusing to call io.open: weight files may not run code"),
        (write_hostile_torchscript, "refusing to call io.open: weight files may not run code"),
        (write_hostile_legacy, "refusing to call io.open: weight files may not run code"),
        (write_hostile_raw_pickle, "refusing to call io.open: weight files may not run code"),
    ],
)
def test_pickle_that_would_run_code_is_refused(tmp_path: Path, writer: object, refusal: str) -> None:
    marker = tmp_path / "pwned.txt"
    weights_file = tmp_path / "weights.pth"
    writer(weights_file, marker)  # type: ignore[operator]
    assert not marker.exists()

    with pytest.raises(CheckpointError, match=refusal) as caught:
        read_checkpoint(weights_file)

    assert caught.value.path == weights_file
    assert not marker.exists()


def test_foreign_classes_are_inert_stand_ins() -> None:
    record = io.BytesIO(pickle.dumps(CreatesFile(Path("never")), protocol=2))
    unpickler = RestrictedUnpickler(record, load_storage=None)
    stand_in = unpickler.find_class("os", "system")
    assert issubclass(stand_in, ForeignObject)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to call os\.system"):
        stand_in("echo hi")


def test_lightning_checkpoint_objects_stay_inert(tmp_path: Path) -> None:
    checkpoint = read_checkpoint(DATA / "lama" / "small.ckpt")
    generator = [key for key in checkpoint.state_dict if key.startswith("generator.")]
    assert len(generator) == 157
    assert len(checkpoint.state_dict) == 157 + 8 + 4  # + discriminator.* and loss_resnet_pl.*
    assert checkpoint.state_dict["generator.model.18.weight"].shape == (3, 8, 7, 7)  # ngf 8 (FIXTURES.md)


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 3, 1))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([image * (1 - mask), mask], dim=1))


class Trainer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.generator = Generator()


class Wrapper(nn.Module):
    """Shaped like IOPaint's traced `big-lama.pt`: wrapper.model.generator.model.<i>."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Trainer()

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.generator(image, mask)


def _save_traced(module: nn.Module, path: Path) -> None:
    torch.manual_seed(0)
    example = (torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8))
    with pytest.warns(DeprecationWarning):
        torch.jit.save(torch.jit.trace(module.eval(), example), str(path))


def test_torchscript_tensors_are_read_without_running_its_code(tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(1)
    wrapper = Wrapper()
    wrapper.model.generator.model[1].running_mean.uniform_(-1, 1)
    path = tmp_path / "big-lama.pt"
    _save_traced(wrapper, path)

    def no_torchscript(*args: object, **kwargs: object) -> None:
        raise AssertionError("TorchScript code must not be loaded")

    monkeypatch.setattr(torch.jit, "load", no_torchscript)
    checkpoint = read_checkpoint(path)

    # The wrapper's `model` is a container: its tensors come out under the training module's names.
    expected = wrapper.state_dict()
    assert [f"model.{key}" for key in checkpoint.state_dict] == list(expected)
    assert all(
        torch.equal(checkpoint.state_dict[key.removeprefix("model.")], v) for key, v in expected.items()
    )
    assert checkpoint.state_dict["generator.model.1.num_batches_tracked"].dtype == torch.int64


def test_torchscript_network_without_wrapper_keeps_its_names(tmp_path: Path) -> None:
    network = nn.Sequential(nn.Conv2d(4, 3, 3))
    path = tmp_path / "plain.pt"
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning):
        torch.jit.save(torch.jit.trace(network, torch.rand(1, 4, 8, 8)), str(path))

    state = read_checkpoint(path).state_dict

    assert state.keys() == network.state_dict().keys()
    assert torch.equal(state["0.weight"], network[0].weight.detach())


def test_truncated_safetensors_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(small_state(), str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    with pytest.raises(CheckpointError, match="corrupt or truncated safetensors file") as caught:
        read_checkpoint(path)
    assert caught.value.path == path


def test_safetensors_with_garbage_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + b"{not json")

    with pytest.raises(CheckpointError, match="corrupt or truncated safetensors file"):
        read_checkpoint(path)


def test_truncated_torch_archive_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"model": small_state()}, path)
    path.write_bytes(path.read_bytes()[:-200])

    with pytest.raises(CheckpointError, match="corrupt or truncated checkpoint") as caught:
        read_checkpoint(path)
    assert caught.value.path == path


def test_damaged_tensor_data_in_a_zip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"model": small_state()}, path)
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    storage = next(name for name in entries if "/data/" in name)
    entries[storage] = entries[storage][:10]  # a storage shorter than its tensors
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)

    with pytest.raises(CheckpointError, match="corrupt or truncated checkpoint"):
        read_checkpoint(path)


def test_zip_that_is_not_a_checkpoint_and_empty_files(tmp_path: Path) -> None:
    archive = tmp_path / "photos.pth"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match=r"not a PyTorch archive \(no data.pkl\)"):
        read_checkpoint(archive)

    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError, match="file is empty"):
        read_checkpoint(empty)


def test_container_without_tensors_names_the_expected_entries(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no state dict found"):
        unwrap_state_dict({"epoch": 3, "optimizer": {}})


def test_save_converted_accepts_tensors_sharing_one_storage(tmp_path: Path) -> None:
    storage = torch.arange(12, dtype=torch.float32)
    shared = {"a.weight": storage[:6].view(2, 3), "b.weight": storage[6:].view(3, 2)}

    path = save_converted(tmp_path / "m.safetensors", shared, family="toy", variant="v", config={"width": 3})

    checkpoint = read_checkpoint(path)
    assert checkpoint.is_converted and checkpoint.config == {"width": 3}
    assert torch.equal(checkpoint.state_dict["b.weight"], shared["b.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left


# --- files that declare more than they hold (issue 12 §2) ----------------------------------------------

RSS_LIMIT_MB = 500
"""Peak RSS of a process that imports torch and refuses a crafted file (the import alone is ~240 MB)."""
ADDRESS_SPACE_LIMIT = 6 << 30
"""The child's address-space cap, so that a regression fails the test instead of swapping the machine."""
CHILD = """
import resource, sys
from inpaint_cli.checkpoints.containers import read_checkpoint
from inpaint_cli.errors import CheckpointError
from inpaint_cli.checkpoints.loading import network_from_checkpoint
from inpaint_cli.detect.network import NetworkDetector
try:
    if sys.argv[2] == "detector":
        NetworkDetector.from_file(sys.argv[1])
    else:
        network_from_checkpoint(read_checkpoint(sys.argv[1]), sys.argv[2] or None)
    print("loaded")
except CheckpointError as exc:
    print(f"error: {exc}")
# VmHWM is this program's own peak; ru_maxrss keeps that of the test process it was forked from (a
# preexec_fn means fork, and the peak survives exec), so after a long test session it measured pytest.
try:
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(int(peak.split()[1]) // 1024)
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def load_in_child(path: Path, family: str = "") -> tuple[str, int]:
    """(the one line the load printed, the child's peak RSS in MB); fails on a traceback.

    `family` "detector" loads the file as `detect --checkpoint` does."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), family],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_address_space,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr[-2000:]
    message, rss = done.stdout.strip().splitlines()
    return message, int(rss)


class StorageRef:
    """A storage record as torch pickles it: a persistent id, its bytes elsewhere."""

    def __init__(self, key: str, numel: int, view: tuple[str, int, int] | None = None) -> None:
        self.key, self.numel, self.view = key, numel, view


class TensorRecord:
    """Pickles as torch's `_rebuild_tensor_v2(storage, offset, size, stride, ...)` with any arguments."""

    def __init__(self, storage: object, size: tuple, stride: tuple, offset: int = 0) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self) -> tuple[object, tuple]:
        return torch._utils._rebuild_tensor_v2, self.args


class Reduce:
    """Pickles as `callable(*arguments)`, whatever the callable is."""

    def __init__(self, function: object, *arguments: object) -> None:
        self.function, self.arguments = function, arguments

    def __reduce__(self) -> tuple[object, tuple]:
        return self.function, self.arguments


class Callable:
    def __call__(self) -> None: ...


class TorchPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, legacy: bool = False) -> None:
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj: object) -> tuple | None:
        if not isinstance(obj, StorageRef):
            return None
        record = ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return (*record, obj.view) if self.legacy else record


def torch_pickle(obj: object, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    TorchPickler(buffer, legacy).dump(obj)
    return buffer.getvalue()


def write_torch_zip(path: Path, obj: object, storages: dict[str, bytes] | None = None) -> Path:
    """A torch zip archive whose record is `obj` pickled (or these bytes)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", obj if isinstance(obj, bytes) else torch_pickle(obj))
        archive.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def write_legacy(path: Path, obj: object, storages: dict[str, tuple[int, bytes]]) -> Path:
    """A pre-zip torch file; each storage as (element count written, bytes)."""
    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2)]
    parts.append(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
    parts += [torch_pickle(obj, legacy=True), pickle.dumps(sorted(storages), protocol=2)]
    for key in sorted(storages):
        count, data = storages[key]
        parts += [count.to_bytes(8, "little"), data]
    path.write_bytes(b"".join(parts))
    return path


def pconv_keys(depth: int, width: int) -> list[tuple[str, tuple[int, ...]]]:
    """Official PConv U-Net weight keys and shapes of a network `depth` deep and `width` wide."""
    keys = []
    for level in range(1, depth + 1):
        channels = 3 if level == 1 else width
        for part in ("input_conv", "mask_conv"):
            keys.append((f"enc_{level}.conv.{part}.weight", (width, channels, 3, 3)))
            keys.append((f"dec_{level}.conv.{part}.weight", (channels, 2 * width, 3, 3)))
    return keys


def test_stride_zero_tensors_declaring_a_wide_pconv_are_refused_without_allocating(tmp_path: Path) -> None:
    """6.8 KB that inferred a 1024-wide PConv U-Net and took 9.3 GB."""
    one = StorageRef("0", 1)
    state = {key: TensorRecord(one, shape, (0,) * len(shape)) for key, shape in pconv_keys(7, 1024)}
    path = write_torch_zip(tmp_path / "wide.pth", {"model": state}, {"0": struct.pack("<f", 1.0)})
    assert path.stat().st_size < 20_000

    message, rss = load_in_child(path, "pconv")

    assert message == (
        f"error: {path}: refused to unpickle: a tensor of shape [1024, 3, 3, 3] repeats the 1 elements "
        "of its storage"
    )
    assert rss < RSS_LIMIT_MB


def test_metadata_config_of_a_giant_lama_is_checked_before_building(tmp_path: Path) -> None:
    path = tmp_path / "giant.safetensors"
    giant = {"ngf": 256, "n_downsampling": 3, "n_blocks": 64, "max_features": 2048, "global_channels": 1536}
    save_converted(
        path, {"model.1.ffc.convl2l.weight": torch.zeros(1)}, family="lama", variant="x", config=giant
    )
    assert path.stat().st_size < 1000

    message, rss = load_in_child(path)

    assert message == (
        f"error: {path}: describes a lama network of 2,769,795,083 parameters, "
        "above this family's ceiling of 500,000,000"
    )
    assert rss < RSS_LIMIT_MB


def test_metadata_config_of_a_giant_detector_is_checked_before_building(tmp_path: Path) -> None:
    """Issue 27: the bundled detector's 2.4 MB of tensors with wf 8 / depth 6 in the metadata built a
    9.7 G-parameter network (23 GB) before the tensors were compared with it."""
    bundled = read_checkpoint(BUNDLED_DETECTOR)
    path = tmp_path / "scratch-tiny.safetensors"
    save_converted(
        path,
        bundled.state_dict,
        family="scratch",
        variant="x",
        config={**bundled.config, "wf": 8, "depth": 6},
    )
    assert path.stat().st_size < 3_000_000

    message, rss = load_in_child(path, "detector")

    assert message == (
        f"error: {path}: describes a scratch network of 9,662,083,103 parameters, "
        "above this family's ceiling of 160,000,000"
    )
    assert rss < RSS_LIMIT_MB
    print(f"peak RSS refusing the detector bomb: {rss} MB")


def test_metadata_config_that_does_not_match_the_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "small.safetensors"
    config = {"ngf": 64, "n_downsampling": 3, "n_blocks": 18, "max_features": 512, "global_channels": 384}
    save_converted(
        path, {"model.1.ffc.convl2l.weight": torch.zeros(1)}, family="lama", variant="x", config=config
    )

    message, rss = load_in_child(path)

    assert message.startswith(
        f"error: {path}: weights do not fit the lama network: missing model.1.bn_l.weight"
    )
    assert "wrong shape model.1.ffc.convl2l.weight (1,) != (64, 4, 7, 7)" in message
    assert rss < RSS_LIMIT_MB


def test_keys_naming_thousands_of_layers_hit_the_depth_ceiling(tmp_path: Path) -> None:
    """11 KB whose key names implied a 2,500-deep PConv U-Net (4.5 GB)."""
    one = StorageRef("0", 1)
    state = {key: TensorRecord(one, (1, 1, 1, 1), (1, 1, 1, 1)) for key, _ in pconv_keys(2500, 1)}
    state["enc_1.conv.input_conv.weight"] = state["enc_1.conv.mask_conv.weight"] = TensorRecord(
        StorageRef("1", 3), (1, 3, 1, 1), (3, 1, 1, 1)
    )
    ones = {"0": struct.pack("<f", 1.0), "1": struct.pack("<3f", 1.0, 1.0, 1.0)}  # all-ones mask kernels
    path = write_torch_zip(tmp_path / "deep.pth", {"model": state}, ones)
    assert path.stat().st_size < 1_000_000

    message, rss = load_in_child(path, "pconv")

    assert message == f"error: {path}: config layer_size = 2500 is outside 1..10"
    assert rss < RSS_LIMIT_MB


def test_deflate_bomb_storage_is_refused_before_inflating(tmp_path: Path) -> None:
    """A storage member of 1 GiB of zeros, deflated (fast, level 1) to under 8 MB."""
    numel = 1 << 28
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr(
            "archive/data.pkl", torch_pickle({"w": TensorRecord(StorageRef("0", numel), (numel,), (1,))})
        )
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            for _ in range(numel * 4 // (1 << 24)):
                member.write(bytes(1 << 24))
    assert path.stat().st_size < 8 << 20  # deflated more than 128 times

    message, rss = load_in_child(path)

    assert message.startswith(f"error: {path}: zip member archive/data/0 declares 1,073,741,824 bytes from ")
    assert message.endswith("compressed (a zip bomb: more than 16x)")
    assert rss < RSS_LIMIT_MB


@pytest.mark.parametrize("gib", [16, 64])
def test_legacy_file_declaring_a_huge_storage_is_refused_before_allocating(tmp_path: Path, gib: int) -> None:
    numel = gib << 28  # float32 elements
    path = write_legacy(
        tmp_path / "huge.pth",
        {"w": TensorRecord(StorageRef("0", numel), (numel,), (1,))},
        {"0": (numel, bytes(64))},
    )

    message, rss = load_in_child(path)

    assert message == (
        f"error: {path}: corrupt or truncated checkpoint: its storages declare more than "
        f"{gib << 30:,} bytes in a file of {path.stat().st_size:,}"
    )
    assert rss < RSS_LIMIT_MB


def test_legacy_files_are_read_by_the_restricted_unpickler(tmp_path: Path) -> None:
    state = {"a": torch.randn(3, 4).t(), "b": torch.arange(10)[2:7], "c": torch.tensor([True, False])}
    path = tmp_path / "legacy.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    loaded = read_checkpoint(path).state_dict
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CheckpointError, match=r"corrupt or truncated checkpoint: storage .* ends early"):
        read_checkpoint(path)


# --- malformed files: one line, never a traceback (issue 12 §3) ---------------------------------------


def _self_containing() -> dict:
    container: dict = {}
    container["state_dict"] = container
    return container


def reduce_of_global(module: str, name: str) -> bytes:
    """A pickle of {"w": module.name()}: pickle itself refuses to write a call of a non-callable."""
    return b"\x80\x02}X\x01\x00\x00\x00wc" + f"{module}\n{name}\n".encode() + b")Rs."


MALFORMED = {
    "reduce-on-dtype": (
        reduce_of_global("torch", "float32"),
        "corrupt or truncated checkpoint: 'torch.dtype' object is not callable",
    ),
    "reduce-on-instance": ({"w": Reduce(Callable())}, "corrupt or truncated checkpoint: 'Callable' object"),
    "unhashable-set": (
        {"w": Reduce(set, [[1, 2]])},
        "corrupt or truncated checkpoint: unhashable type: 'list'",
    ),
    "non-storage": ({"w": TensorRecord(5, (2,), (1,))}, "refused to unpickle: a tensor without a storage"),
    "beyond-storage": (
        {"w": TensorRecord(StorageRef("0", 4), (100,), (1,))},
        "refused to unpickle: a tensor of shape [100] reaches beyond its storage of 4 elements",
    ),
    "self-containing": (_self_containing(), "containers nested more than 16 deep (or containing themselves)"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_pickles_are_one_line_errors(tmp_path: Path, case: str) -> None:
    obj, expected = MALFORMED[case]
    path = write_torch_zip(tmp_path / "bad.pth", obj, {"0": bytes(16)})
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert caught.value.what.startswith(expected) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            bytes(range(256)) * 4,
            "not a checkpoint: neither safetensors, a PyTorch zip archive nor a PyTorch file",
        ),
        (pickle.dumps({"epoch": 3}, protocol=2), "a plain pickle, not a PyTorch checkpoint"),
    ],
    ids=["random-bytes", "plain-pickle"],
)
def test_files_that_are_not_checkpoints_are_named_in_our_words(tmp_path: Path, content: bytes, expected: str):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    assert caught.value.what == expected
    assert "weights_only" not in str(caught.value)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("{not json", "invalid config in the metadata: not JSON"),
        ("[1, 2]", "invalid config in the metadata: a JSON list, not an object"),
        (
            '{"variant": "pt", "cnum": "48"}',
            "invalid config in the metadata: config cnum is '48'; expected int",
        ),
        (
            '{"variant": "xx", "cnum": 48}',
            "invalid config in the metadata: config variant is 'xx'; expected one of",
        ),
        (
            '{"variant": "pt", "cnum": 48, "depth": 3}',
            "invalid config in the metadata: unknown config field(s) depth",
        ),
        (
            '{"variant": "pt", "cnum": true}',
            "invalid config in the metadata: config cnum is True; expected int",
        ),
    ],
)
def test_invalid_metadata_configs_are_one_line_errors(tmp_path: Path, config: str, expected: str) -> None:
    path = tmp_path / "g.safetensors"
    metadata = {"format": "inpaint", "family": "gatedconv", "variant": "pt", "config": config}
    save_file({"stage1.conv1.conv.weight": torch.zeros(1)}, str(path), metadata=metadata)
    with pytest.raises(CheckpointError) as caught:
        network_from_checkpoint(read_checkpoint(path))
    assert caught.value.what.startswith(expected) and caught.value.path == path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load_and_import(tmp_path: Path, value: float) -> None:
    state = read_checkpoint(DATA / "pconv" / "small.pth").state_dict
    state["enc_2.bn.weight"][3] = value
    path = tmp_path / "damaged.pth"
    torch.save({"model": state}, path)

    with pytest.raises(CheckpointError, match=r"non-finite values in enc_2\.bn\.weight"):
        network_from_checkpoint(read_checkpoint(path), "pconv")
    destination = tmp_path / "cache" / "pconv.safetensors"
    with pytest.raises(CheckpointError, match=r"non-finite values in enc_2\.bn\.weight"):
        convert_checkpoint(
            path, destination, family="pconv", variant="v", source_url="", source_sha256="", license=""
        )
    assert not destination.exists()


def test_an_all_nan_detector_is_refused_not_taken_for_no_damage(tmp_path: Path) -> None:
    """Issue 27: a detector whose weights are all NaN said "no damage found" and exited 0."""
    bundled = read_checkpoint(BUNDLED_DETECTOR)
    nan = {
        key: torch.full_like(value, float("nan")) if value.is_floating_point() else value
        for key, value in bundled.state_dict.items()
    }
    path = save_converted(
        tmp_path / "nan.safetensors", nan, family="scratch", variant="x", config=bundled.config
    )
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(photo)

    with pytest.raises(CheckpointError, match=r"non-finite values in down_path\.0\.block\.1\.bias"):
        NetworkDetector.from_file(path)
    result = CliRunner().invoke(app, ["detect", str(photo), "--checkpoint", str(path)])

    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: {path}: non-finite values in down_path.0.block.1.bias (the file is damaged)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.safetensors", "photo.png"]


def test_a_detector_is_not_taken_for_a_filler_nor_the_other_way_round() -> None:
    with pytest.raises(CheckpointError) as filler:
        network_from_checkpoint(read_checkpoint(BUNDLED_DETECTOR))
    with pytest.raises(CheckpointError) as detector:
        NetworkDetector.from_file(BUNDLED / "pconv-tiny.safetensors")
    assert filler.value.what == "holds a scratch model, not a gatedconv or lama or pconv model"
    assert detector.value.what == "holds a pconv model, not a scratch model"


@pytest.mark.parametrize("kind", ["pconv", "detector"])
def test_half_precision_files_load_as_float32_networks(tmp_path: Path, kind: str) -> None:
    """The loader places every network in float32 whatever the file stores; precision is the engine's."""
    source = read_checkpoint(BUNDLED_DETECTOR if kind == "detector" else BUNDLED / "pconv-tiny.safetensors")
    half = {
        key: value.half() if value.is_floating_point() else value for key, value in source.state_dict.items()
    }
    family = source.metadata["family"]
    path = save_converted(
        tmp_path / "half.safetensors", half, family=family, variant="x", config=source.config
    )

    if kind == "detector":
        network = NetworkDetector.from_file(path).network
    else:
        network = network_from_checkpoint(read_checkpoint(path))

    assert {p.dtype for p in network.parameters()} == {torch.float32}
    assert {p.device.type for p in network.parameters()} == {"cpu"}


# --- the family of a file alone (issue 15 §4) -----------------------------------------------------------


def family_of_file(path: Path) -> str:
    """The family `run --checkpoint FILE` without `--model` takes the file for (the one loader's answer)."""
    return resolve_checkpoint(read_checkpoint(path)).family.family


@pytest.mark.parametrize(
    ("file", "family"),
    [
        ("lama/small.ckpt", "lama"),
        ("lama/small_generator_state.safetensors", "lama"),
        ("deepfill/pt_random.pth", "gatedconv"),
        ("deepfill/tf_random.pth", "gatedconv"),
        ("pconv/small.pth", "pconv"),
    ],
)
def test_the_family_is_recognised_from_the_file_alone(file: str, family: str, tmp_path: Path) -> None:
    assert family_of_file(DATA / file) == family
    converted = convert_checkpoint(
        DATA / file,
        tmp_path / "c.safetensors",
        family=family,
        variant="v",
        source_url="",
        source_sha256="",
        license="",
    )
    assert family_of_file(converted) == family


def test_a_file_of_no_family_says_so(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match=r"unknown checkpoint layout \(first keys: encoder\.weight\)"):
        family_of_file(path)


# --- imports go one way: containers <- loading -> families ---------------------------------------------

PACKAGE = Path(__file__).resolve().parents[2] / "inpaint_cli"


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """(modules of `inpaint_cli` a file imports, names of the functions that import anything)."""
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    in_functions = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(isinstance(node, ast.Import | ast.ImportFrom) for node in ast.walk(function))
    ]
    return {name for name in imported if name.startswith("inpaint_cli")}, in_functions


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("checkpoints/containers.py", ("inpaint_cli.models", "inpaint_cli.checkpoints.loading")),
        (
            "checkpoints/torch_archives.py",
            ("inpaint_cli.models", "inpaint_cli.checkpoints.loading", "inpaint_cli.checkpoints.containers"),
        ),
        (
            "models/__init__.py",
            (
                "inpaint_cli.checkpoints.loading",
                "inpaint_cli.checkpoints.containers",
                "inpaint_cli.checkpoints.torch_archives",
            ),
        ),
        (
            "models/base.py",
            ("inpaint_cli.checkpoints.loading", "inpaint_cli.checkpoints.containers", "inpaint_cli.models"),
        ),
        ("models/lama.py", ("inpaint_cli.checkpoints.loading", "inpaint_cli.checkpoints.containers")),
        ("models/gatedconv.py", ("inpaint_cli.checkpoints.loading", "inpaint_cli.checkpoints.containers")),
        ("models/pconv.py", ("inpaint_cli.checkpoints.loading", "inpaint_cli.checkpoints.containers")),
        ("models/classical.py", ("inpaint_cli.checkpoints.loading", "inpaint_cli.checkpoints.containers")),
        ("models/ffc.py", ("inpaint_cli",)),
        ("models/contextual_attention.py", ("inpaint_cli",)),
        ("checkpoints/loading.py", ()),
    ],
)
def test_loading_imports_go_one_way_and_never_inside_functions(
    module: str, forbidden: tuple[str, ...]
) -> None:
    imported, in_functions = _imports(PACKAGE / module)
    assert not {name for name in imported if name.startswith(forbidden)} and not in_functions


def test_the_registry_keys_each_family_class_by_the_name_it_declares() -> None:
    assert all(family.family == name for name, family in FAMILIES.items())
    assert weighted_families() == ["gatedconv", "lama", "pconv"]
    telea = classical.ClassicalInpainter.build(classical.MODELS["telea"])
    # No training resolution, so nothing to downscale for: the largest side a file can hold.
    assert telea.training_size is None and telea.native_side == classical.UNLIMITED_SIDE == 2**31 - 1
    assert telea.cost_estimate(1000, 1000) == pytest.approx(2 * 5 * 7**2 * 1e6 / 1e9)  # radius 3
    with pytest.raises(CheckpointError, match="config method is 'fast'; expected one of 'telea', 'ns'"):
        classical.ClassicalInpainter.build({"method": "fast"})
    with pytest.raises(CheckpointError, match="the classical methods take no weights"):
        network_from_checkpoint(read_checkpoint(DATA / "pconv" / "small.pth"), "classical")


def test_python_2_names_of_protocol_2_pickles_are_the_builtins(tmp_path: Path) -> None:
    """torch.save writes protocol 2, where a set is `__builtin__.set`: a container, not code."""
    path = tmp_path / "with-set.pth"
    torch.save({"model": small_state(), "tags": {"a", "b"}, "ids": frozenset({1})}, path)
    assert read_checkpoint(path).state_dict.keys() == small_state().keys()
