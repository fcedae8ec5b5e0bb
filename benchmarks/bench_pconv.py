"""PConv U-Net: our partial convolutions against a straightforward implementation of the reference formula.

The reference (naoto0804 `PartialConv`) computes each layer's valid count with a second convolution
as wide as the real one, over a per-channel mask, with an all-ones kernel. Ours drops those kernels
and counts with one single-channel box filter. This script builds the full-size network (depth 7,
random weights drawn like the fixtures', SPEC §7.1), checks both give the same output, and prints
the time per forward pass, the speed-up and the approximate peak memory of one pass.

    python benchmarks/bench_pconv.py [--size 512] [--depth 7] [--repeats 3] [--threads N]

The reference implementation is tests/pconv_reference.py, also the oracle of tests/test_pconv.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from measure import RssSampler, interleaved, machine_summary, pin_threads

from inpaint_cli.checkpoints.loading import load_strict
from inpaint_cli.models import pconv
from inpaint_cli.models.base import IMAGENET

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pconv_reference import ReferencePConvUNet, random_hole, randomize_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="side of the square input")
    parser.add_argument("--depth", type=int, default=7, help="layer_size of the U-Net")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    pin_threads(args.threads)
    print(machine_summary())

    reference = randomize_(ReferencePConvUNet(args.depth), args.seed).eval()
    converted = pconv.PConvUNet.convert_state_dict(reference.state_dict())
    ours = pconv.PConvUNet.build(pconv.PConvUNet.config_from_state_dict(converted))
    load_strict(ours, converted)
    ours.eval()
    ours.prepare_for_inference()

    torch.manual_seed(args.seed)
    image = IMAGENET.to_network(torch.rand(1, 3, args.size, args.size))
    valid = 1 - random_hole(args.size, args.size, args.seed)
    masked, valid3 = image * valid, valid.expand(-1, 3, -1, -1).contiguous()

    with torch.inference_mode():
        with RssSampler() as sampled:
            ours(image, valid)
        ours_peak = sampled.increase
        with RssSampler() as sampled:
            reference(masked, valid3)
        reference_peak = sampled.increase
        ours_out, reference_out = ours(image, valid), reference(masked, valid3)
        # Interleaved; the fastest run of each, as before.
        seconds = interleaved(
            {"ours": lambda: ours(image, valid), "reference": lambda: reference(masked, valid3)},
            rounds=args.repeats,
            warmup=0,
        )
    ours_time, reference_time = min(seconds["ours"]), min(seconds["reference"])

    difference = (ours_out - reference_out).abs().max().item()
    scale = reference_out.abs().max().item()
    same = torch.allclose(ours_out, reference_out, rtol=1e-4, atol=1e-4)
    pixels = args.size * args.size
    print(f"PConv U-Net depth {args.depth}, {args.size}x{args.size}, {torch.get_num_threads()} CPU threads")
    print(f"hole fraction           {1 - valid.mean().item():.3f}")
    print(f"reference formula       {reference_time:.3f} s/pass   peak +{reference_peak / 2**20:.0f} MiB")
    print(f"inpaint (box filter)    {ours_time:.3f} s/pass   peak +{ours_peak / 2**20:.0f} MiB")
    print(f"speed-up                {reference_time / ours_time:.2f}x")
    print(f"peak bytes per pixel    {ours_peak / pixels:.0f} (ours)")
    print(f"max |difference|        {difference:.2e} (outputs up to {scale:.1f}; allclose 1e-4: {same})")
    if not same:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
