#!/usr/bin/env python
"""Train SPIC's receiver (a DDPM conditioned on a semantic map and a coarse image) with Accelerate.

The defaults are the paper's recipe (linear 1000-step schedule, learned-range variance with the hybrid loss,
AdamW 1e-4, EMA 0.9999, 256x512, 653 M parameters); `training/configs/paper.json` adds its batch size and
gradient checkpointing, `training/configs/tiny.json` is a small model for quick runs. All options:
`python training/train_spic.py --help`.

One GPU:
    accelerate launch --num_processes 1 --mixed_precision fp16 training/train_spic.py \
        --config training/configs/paper.json --dataset_name_or_path PATH_OR_ID --output_dir spic-cityscapes

Several GPUs on one machine (here 8; `--train_batch_size` is per GPU):
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision fp16 training/train_spic.py \
        --config training/configs/paper.json --dataset_name_or_path PATH_OR_ID --output_dir spic-cityscapes

Several machines (here 2 x 8 GPUs; run on every machine with its MACHINE_RANK; `--output_dir` must be on a
file system all machines share, since every process writes its RNG state into each checkpoint):
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank MACHINE_RANK \
        --main_process_ip MAIN_HOST --main_process_port 29500 --mixed_precision fp16 training/train_spic.py \
        --config training/configs/paper.json --dataset_name_or_path PATH_OR_ID --output_dir /shared/spic-cityscapes

Two processes on a CPU (`accelerate launch --cpu --num_processes 2` would start only one):
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no --main_process_port 29511 training/train_spic.py --cpu --config training/configs/tiny.json \
        --dataset_name_or_path PATH --output_dir spic-tiny

Resume: add `--resume_from_checkpoint latest` (same `--output_dir`). Fine-tune: `--init_from PIPELINE_OR_UNET_DIR`.
"""

import sys

from spic_diffusers.training import cli

if __name__ == "__main__":
    sys.exit(cli())
