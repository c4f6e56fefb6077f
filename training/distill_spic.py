#!/usr/bin/env python
"""Distil SPIC's guided 20-step sampler into a single-pass student of 4, 2 or 1 steps, with Accelerate.

The method and why: `spic_diffusers/training/distill.py`. All options: `python training/distill_spic.py --help`.

CPU (one process), a 2-step student of the shipped 360x480 CamVid receiver, its teacher run on one 128x192 crop
of each frame with the frame's coarse image coded at one of four QPs:
    python training/distill_spic.py --cpu --teacher src/spic_diffusers/assets/spic-camvid \
        --dataset_name_or_path camvid_spic --resolution 360,480 --coarse_codec hevc --coarse_qualities 30,35,40,45 \
        --teacher_crop 128,192 --random_crop 96,128 --channels_last --num_student_steps 2 \
        --teacher_cache teacher.safetensors --max_train_samples 64 --train_batch_size 8 --max_train_steps 300 \
        --output_dir spic-camvid-fast
(`--teacher_cache` lets students of other step counts reuse the teacher's trajectories; add `--teacher_dtype bf16`
and `--mixed_precision bf16` on CPUs with native bf16.) The recipe of the shipped student:
`scripts/distill_camvid_receiver.sh`.

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
