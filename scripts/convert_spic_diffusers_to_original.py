#!/usr/bin/env python
"""Write a diffusers SPIC model back as an original-format `model.pt` (for the authors' code).

    python scripts/convert_spic_diffusers_to_original.py --model spic-cityscapes --output model.pt
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from spic_diffusers import SPICUNet2DModel, convert_to_original_state_dict
from spic_diffusers.conversion import original_code_incompatibilities


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a SPICPipeline folder or a SPICUNet2DModel folder")
    parser.add_argument("--output", required=True, help="path of the original-format state dict to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    if os.path.exists(args.output) and not args.overwrite:
        print(f"error: {args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    folder = os.path.join(args.model, "unet") if os.path.isdir(os.path.join(args.model, "unet")) else args.model
    try:
        config = SPICUNet2DModel.load_config(folder)
    except (OSError, ValueError) as err:
        print(f"error: cannot read a SPICUNet2DModel config in {folder}: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    problems = original_code_incompatibilities(config)
    if problems:
        print(f"error: the original SPIC code cannot express {args.model}: {'; '.join(problems)}", file=sys.stderr)
        return 2
    unet = SPICUNet2DModel.from_pretrained(folder)
    state = convert_to_original_state_dict(unet.state_dict(), unet.config)
    torch.save(state, args.output)
    print(f"wrote {len(state)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
