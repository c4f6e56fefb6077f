#!/usr/bin/env python
"""Convert an original SPIC checkpoint (guided-diffusion `model.pt`) into a diffusers folder.

    python scripts/convert_spic_original_to_diffusers.py --checkpoint_path model.pt --dump_path spic-cityscapes

Shapes are read off the checkpoint; options that shapes cannot fix (head width, image size) take the
paper's values unless given as flags or in `--original_config` (flat JSON or under a "model" key).
"""

from __future__ import annotations

import argparse
import os
import sys

from spic_diffusers.conversion import (
    ORIGINAL_OPTION_NAMES,
    ConversionError,
    load_original_checkpoint,
    load_original_config,
    scheduler_config_from_original_options,
    unet_from_original_checkpoint,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint_path", required=True, help="original model.pt (a state dict)")
    parser.add_argument("--dump_path", required=True, help="output folder (save_pretrained layout)")
    parser.add_argument("--original_config", help="JSON file of original options")
    parser.add_argument("--unet_only", action="store_true", help="write only the UNet, not a full SPICPipeline")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty dump_path")
    parser.add_argument("--push_to_hub", metavar="REPO_ID", help="also publish the pipeline to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--token", help="Hub token (defaults to the logged-in one)")
    parser.add_argument("--revision", help="Hub branch to push to")
    parser.add_argument("--commit_message", default="Add SPIC weights converted from the original checkpoint")
    group = parser.add_argument_group("original options (the original code's flag names)")
    for name in ORIGINAL_OPTION_NAMES:
        group.add_argument(f"--{name}", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.path.isdir(args.dump_path) and os.listdir(args.dump_path) and not args.overwrite:
        print(f"error: {args.dump_path} exists and is not empty; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        options = load_original_config(args.original_config) if args.original_config else {}
    except (OSError, ValueError) as err:
        print(f"error: --original_config: {err}", file=sys.stderr)
        return 2
    options.update({k: getattr(args, k) for k in ORIGINAL_OPTION_NAMES if getattr(args, k) is not None})
    try:
        state = load_original_checkpoint(args.checkpoint_path)
        unet = unet_from_original_checkpoint(state, options)
        scheduler_config = scheduler_config_from_original_options(
            options, learn_sigma=unet.config.out_channels == 2 * unet.config.in_channels
        )
    except (ConversionError, FileNotFoundError, NotImplementedError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_params = sum(p.numel() for p in unet.parameters())
    if args.unet_only:
        unet.save_pretrained(args.dump_path)
        print(f"wrote SPICUNet2DModel ({n_params / 1e6:.1f} M parameters) to {args.dump_path}")
        return 0
    from spic_diffusers import SPICPipeline
    from spic_diffusers.pipelines.pipeline_spic import default_scheduler

    scheduler = default_scheduler()
    pipe = SPICPipeline(unet=unet, scheduler=type(scheduler).from_config({**scheduler.config, **scheduler_config}))
    pipe.save_pretrained(args.dump_path)
    print(f"wrote SPICPipeline ({n_params / 1e6:.1f} M parameters) to {args.dump_path}")
    if args.push_to_hub:
        from spic_diffusers.hub import HubUnreachableError, push_to_hub, reporting_unreachable_hub

        try:
            with reporting_unreachable_hub(args.dump_path):
                url = push_to_hub(pipe, args.push_to_hub, private=args.private, token=args.token,
                                  revision=args.revision, commit_message=args.commit_message,
                                  source="converted from the original SPIC checkpoint",
                                  license="other")  # the authors' repository states no licence
        except HubUnreachableError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"published to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
