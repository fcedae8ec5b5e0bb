"""The released networks' shapes (big-lama, DeepFill v2 at cnum 48, PConv depth 7) for the benchmarks.

Random weights: speed and memory depend on the shapes, not on the values; batch norms get non-trivial
statistics so that folding them and reduced precisions are exercised as with trained weights.
"""

from __future__ import annotations

import torch

from inpaint_cli.models.base import InpaintModel
from inpaint_cli.models.gatedconv import DeepFillV2
from inpaint_cli.models.lama import Lama
from inpaint_cli.models.pconv import PConvUNet

BIG_LAMA = {
    "ngf": 64,
    "n_downsampling": 3,
    "n_blocks": 18,
    "max_features": 512,
    "global_channels": 384,
    "enable_lfu": False,
}


@torch.no_grad()
def released_architecture(family: str) -> InpaintModel:
    """The released network's shape with random weights and non-trivial batch norms, prepared."""
    torch.manual_seed(0)
    network: InpaintModel
    if family == "lama":
        network = Lama(BIG_LAMA)
    elif family == "gatedconv":
        network = DeepFillV2({"variant": "pt", "cnum": 48})
    else:
        network = PConvUNet({"layer_size": 7})
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.normal_(0, 0.2)
    network.eval()
    network.prepare_for_inference()
    return network
