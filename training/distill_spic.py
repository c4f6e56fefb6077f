#!/usr/bin/env python
"""Distil SPIC's guided 20-step sampler into a single-pass student of 4, 2 or 1 steps, with Accelerate.

The method and why: `spic_diffusers/training/distill.py`. All options: `python training/distill_spic.py --help`.

CPU (one process), a 4-step student of a receiver trained on CamVid at 96x128:
    python training/distill_spic.py --cpu --teacher spic-camvid-small --dataset_name_or_path camvid_96 \
        --num_student_steps 4 --teacher_cache teacher.safetensors --train_batch_size 4 --max_train_steps 300 \
        --output_dir spic-camvid-fast
(`--teacher_cache` lets students of 2 and 1 steps reuse the teacher's trajectories; add `--teacher_dtype bf16` on
CPUs with native bf16.) The recipe of the shipped student: `scripts/distill_camvid_receiver.sh`.

One GPU:
    accelerate launch --num_processes 1 training/distill_spic.py --teacher PIPELINE --dataset_name_or_path DATA \
        --num_student_steps 2 --output_dir spic-fast-2

Resume: add `--resume_from_checkpoint latest` (same `--output_dir`). The result is an ordinary SPICPipeline folder:
`spic decode --model spic-camvid-fast` runs its few-step schedule.
"""

import sys

from spic_diffusers.training.distill import cli

if __name__ == "__main__":
    sys.exit(cli())
