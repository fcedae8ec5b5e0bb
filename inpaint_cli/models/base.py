"""The contract between the engine and a model family.

A family is one class: the network (an `InpaintModel` subclass) whose class methods recognise a
state dict, convert the official layout to ours and infer a typed config from the tensors, and
whose attributes declare what the engine needs to feed it: how to normalise the image, which value
marks a hole in the mask the network reads, the padding multiple and mode, the longest side it
fills well (`native_side`), and a memory and a cost model of one pass. The engine owns everything
else (decoding, padding, compositing, precision, devices), so a family file contains only the
network, its config and its checkpoint conversion.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from inpaint_cli.errors import CheckpointError

PadMode = Literal["symmetric", "reflect", "replicate", "constant"]
"""`symmetric` repeats the edge sample (numpy's mode, LaMa's dataset); `reflect` does not (PyTorch's)."""

Intermediates = dict[str, torch.Tensor]

NATIVE_SIDE_FACTOR = 4
"""A network fills boxes up to this many times its training side at native resolution: DeepFill v2
and PConv (trained on 256-px crops) degrade beyond about 1 MP. LaMa declares more."""
GIGA = 1e9


@dataclass(frozen=True)
class Normalization:
    """Per-channel affine map from [0, 1] RGB to what the network reads: `(x - mean) / std`."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_network(self, rgb: torch.Tensor) -> torch.Tensor:
        mean, std = self._as_tensors(rgb)
        return (rgb - mean) / std

    def from_network(self, values: torch.Tensor) -> torch.Tensor:
        mean, std = self._as_tensors(values)
        return values * std + mean

    def _as_tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        return mean, std


UNIT_RANGE = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
SIGNED_UNIT_RANGE = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def bounded(low: int, high: int, *, default: Any = dataclasses.MISSING) -> Any:
    """A config field whose integer value must lie in [low, high] (a family's hard ceiling)."""
    return dataclasses.field(default=default, metadata={"range": (low, high)})


KERNEL_ATTRIBUTE = "inference_kernel"
"""A convolution carrying this attribute runs it instead of its float weights (`precision.py`: int8)."""


def conv2d(
    conv: nn.Conv2d, x: torch.Tensor, padding: int | tuple[int, int], bias: bool = True
) -> torch.Tensor:
    """`F.conv2d` with `conv`'s weights and zero `padding`, or the kernel `precision.py` attached to it.

    Families that call their convolutions functionally go through here, so int8 inference (and its
    calibration) can replace a layer's arithmetic without the family knowing.
    """
    kernel = conv.__dict__.get(KERNEL_ATTRIBUTE)
    if kernel is not None:
        return kernel(x, padding, bias)
    return F.conv2d(
        x, conv.weight, conv.bias if bias else None, conv.stride, padding, conv.dilation, conv.groups
    )


ConfigT = TypeVar("ConfigT", bound="FamilyConfig")
NetworkT = TypeVar("NetworkT", bound="Network")


@dataclass(frozen=True)
class FamilyConfig:
    """Base of every family's typed architecture config (whisper's `ModelDimensions`).

    Stored as JSON in our safetensors metadata; read back only through `from_json`, which checks
    every field's type and range, so a file cannot describe a network beyond a family's ceilings.
    """

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls: type[ConfigT], raw: object) -> ConfigT:
        """A validated config from a JSON object: known fields only, exact types, values in range."""
        if isinstance(raw, cls):
            return raw
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"config must be a JSON object, not {type(raw).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise CheckpointError(f"unknown config field(s) {', '.join(map(str, unknown))}")
        hints = typing.get_type_hints(cls)
        values = {}
        for name, spec in fields.items():
            if name not in raw:
                if spec.default is dataclasses.MISSING:
                    raise CheckpointError(f"config lacks {name}")
                continue
            values[name] = _checked_value(name, raw[name], hints[name], spec.metadata.get("range"))
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Checks between fields; a family overrides it. Raise CheckpointError on a problem."""


def _checked_value(name: str, value: object, hint: Any, limits: tuple[int, int] | None) -> object:
    """`value` if it has the field's type (bool, int, float, str or a Literal of them), within `limits`."""
    choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else None
    if choices is not None:
        if value not in choices or type(value) is not type(choices[0]):
            raise CheckpointError(
                f"config {name} is {value!r}; expected one of {', '.join(map(repr, choices))}"
            )
        return value
    expected = hint if isinstance(hint, type) else None
    if expected is float and type(value) is int:
        value = float(value)  # JSON writes 1.0 as 1 in some encoders: a whole number is a float too
    # bool is an int in Python; a config field is exactly one of them.
    if expected is None or type(value) is not expected:
        raise CheckpointError(f"config {name} is {value!r}; expected {getattr(expected, '__name__', hint)}")
    if expected is float and not math.isfinite(value):  # type: ignore[arg-type]
        raise CheckpointError(f"config {name} is {value!r}; expected a finite number")
    if limits is not None and not limits[0] <= value <= limits[1]:  # type: ignore[operator]
        raise CheckpointError(f"config {name} = {value} is outside {limits[0]}..{limits[1]}")
    return value


class Network(nn.Module):
    """Base of every network the tool loads from a file (inpainting families and damage detectors).

    What the one loader (`checkpoints.loading`) needs: the family's name, its typed `Config`, a
    parameter ceiling, and pure class methods that recognise a state dict, convert the official
    layout to ours, infer a config from the tensors and list the tensors a config implies.
    """

    family: ClassVar[str]
    """The family's name, written only here; the registries key on it."""
    Config: ClassVar[type[FamilyConfig] | None] = None
    needs_weights: ClassVar[bool] = True
    max_parameters: ClassVar[int] = 10**9
    """Hard ceiling on the parameter count a checkpoint may describe."""

    def __init__(self, config: FamilyConfig | Mapping[str, Any]) -> None:
        super().__init__()
        self.config = self.Config.from_json(config) if self.Config is not None else config

    # --- checkpoints (pure class methods, no I/O) -----------------------------------------------

    @classmethod
    def recognizes(cls, state_dict: Mapping[str, torch.Tensor]) -> bool:
        """True when a state dict (official layout or ours) belongs to this family."""
        return False

    @classmethod
    def convert_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official layout (already unwrapped from its container) -> ours. Idempotent on ours."""
        return dict(state_dict)

    @classmethod
    def config_from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> FamilyConfig:
        """The architecture inferred from the tensor shapes of a state dict in our layout."""
        raise CheckpointError(f"the {cls.family} family has no weights")

    @classmethod
    def build(cls: type[NetworkT], config: FamilyConfig | Mapping[str, Any]) -> NetworkT:
        """An untrained network for a config."""
        return cls(config)

    @classmethod
    def expected_tensors(cls, config: FamilyConfig) -> dict[str, torch.Size]:
        """Shape of every state-dict entry of the network a config describes, allocating nothing.

        The network is built on the `meta` device; its parameter count must stay under the family's
        ceiling, which is checked before anything of that size is allocated for real.
        """
        with torch.device("meta"):
            network = cls(config)
        shapes = {key: value.shape for key, value in network.state_dict().items()}
        parameters = sum(math.prod(shape) for shape in shapes.values())
        if parameters > cls.max_parameters:
            raise CheckpointError(
                f"describes a {cls.family} network of {parameters:,} parameters, "
                f"above this family's ceiling of {cls.max_parameters:,}"
            )
        return shapes

    def prepare_for_inference(self) -> None:
        """Called once after the weights are loaded and the model is in eval mode.

        Families fold batch norms, drop constant tensors and so on here. The result must be
        numerically equivalent (within 1e-4) to the unprepared network.
        """


class InpaintModel(Network):
    """Base class of every inpainting family: the network, its checkpoint conversion and its declared facts.

    Subclasses set the class attributes, a `Config` dataclass and `forward`, and override the
    checkpoint class methods. The engine guarantees that `forward` receives an image whose sides
    are multiples of `pad_multiple` and at least `min_size`, already normalised, and a mask in the
    family's own convention.
    """

    normalization: ClassVar[Normalization] = UNIT_RANGE
    hole_value: ClassVar[float] = 1.0
    """Value of a hole pixel in the mask the network reads (PConv uses 0 = hole, 1 = valid)."""
    pad_mode: ClassVar[PadMode] = "symmetric"
    training_size: ClassVar[int | None] = 256
    """Side length (pixels) of the crops the weights were trained on (None: not a trained network)."""
    activation_bytes_per_pixel: ClassVar[int] = 4096
    """Peak fp32 activation memory of one forward pass per input pixel (measured per family)."""

    # --- declared facts -------------------------------------------------------------------------

    @property
    def pad_multiple(self) -> int:
        """Both sides of the network input must be multiples of this."""
        return 8

    @property
    def min_size(self) -> int:
        """Smallest side (after padding) the network accepts."""
        return self.pad_multiple

    @property
    def native_side(self) -> int:
        """Longest side (pixels) the network fills well without downscaling."""
        assert self.training_size is not None, "a family without training size declares native_side"
        return NATIVE_SIDE_FACTOR * self.training_size

    @property
    def fill_reach(self) -> float:
        """Deepest hole (pixels from the nearest known pixel) one pass fills; inf: no such limit.

        A family whose network passes only known pixels on (partial convolutions) leaves deeper
        holes without input, filled with its biases: a flat patch. The planner downscales such
        holes until they are within reach.
        """
        return math.inf

    def memory_estimate(self, height: int, width: int) -> int:
        """Peak bytes of activations for one fp32 forward pass at this (padded) size, batch 1.

        Families whose cost is not linear in the pixel count (contextual attention) override it.
        """
        return self.activation_bytes_per_pixel * height * width

    def macs_per_pixel(self) -> float:
        """Multiply-accumulates of the convolutions per input pixel of one pass.

        This default counts every convolution at full resolution (an upper bound for networks that
        downsample), and at least one operation per pixel so that costs can be compared as ratios;
        families count each layer at its own resolution.
        """
        convolutions = (m for m in self.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))
        return float(max(1, sum(m.weight.numel() for m in convolutions)))

    def cost_estimate(self, height: int, width: int) -> float:
        """Work of one pass at this (padded) size in GFLOP (2 per multiply-accumulate), batch 1.

        A relative measure for planning: time per pass is about proportional to it on one device.
        Families with work that is not linear in the pixel count (attention, FFTs) add it.
        """
        return 2 * self.macs_per_pixel() * height * width / GIGA

    # --- inference --------------------------------------------------------------------------------

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, intermediates: Intermediates | None = None
    ) -> torch.Tensor:
        """Predict the whole image.

        image: N×3×H×W, normalised with `normalization`; hole pixels still hold the original values
            (the family masks its input the way its training did).
        mask: N×1×H×W float, `hole_value` where the pixel is a hole.
        intermediates: when a dict is given, the family stores named tensors in it for
            `--save-intermediates` (`mask.<layer>`, `gate.<layer>`, `feature.<layer>`, and `coarse` for
            a two-stage network's first output, normalised like the prediction). When it is None,
            capturing must cost nothing.
        Returns the prediction N×3×H×W in the same normalised space as `image`.
        """
        raise NotImplementedError

    def prepare_for_training(self) -> None:
        """Family details of training a freshly built network (tools/train_demo_models.py): trainable
        replacements of inference-only layers, initialisation. None by default."""

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights of a network prepared for training, in the layout `build(config)` loads."""
        return {key: value.detach().clone() for key, value in self.state_dict().items()}

    def float_modules(self, precision: str) -> list[nn.Module]:
        """Modules whose convolutions stay float32 at `precision` (fp16, bf16 or int8), for accuracy.

        For int8, `precision.py` already keeps first layers (few input channels) and RGB output layers
        in float; a family adds what else needs it (LaMa: its encoder and its Fourier units). For half
        precision, the modules a family runs with autocast disabled keep float32 weights.
        """
        return []
