"""Weight files never run code: hostile pickles are refused, broken files give clear errors.

Every container the tool reads is covered: torch zip archives (`.pth`, Lightning `.ckpt`),
legacy torch files, raw pickles, TorchScript archives and safetensors.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from inpaint_cli.checkpoints import (
    ForeignObject,
    RestrictedUnpickler,
    read_checkpoint,
    save_converted,
    unwrap_state_dict,
)
from inpaint_cli.errors import CheckpointError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


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
    checkpoint = read_checkpoint(REFERENCE / "lama" / "small.ckpt")
    generator = [key for key in checkpoint.state_dict if key.startswith("generator.")]
    assert len(generator) == 157
    assert len(checkpoint.state_dict) == 157 + 8 + 4  # + discriminator.* and loss_resnet_pl.*
    assert checkpoint.state_dict["generator.model.18.weight"].shape == (3, 16, 7, 7)


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
