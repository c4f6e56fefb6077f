#!/usr/bin/env bash
# Train the SPIC receiver shipped in the package (spic-camvid) on real CamVid street photographs at their native
# 360x480, in two stages on the CPU.
#
#   bash scripts/train_camvid_receiver.sh CAMVID_ROOT [WORK_DIR] [STEPS]
#
# CAMVID_ROOT: SegNet's CamVid folder (train/ trainannot/ val/ valannot/ test/ testannot/).
# PYTHON picks the interpreter (default: python). INIT (environment) skips stage 1 and starts stage 2 from that
# pipeline folder. Each stage checkpoints every 250 steps: rerun the same command to resume an interrupted run.
#
# Stage 1, frames downscaled to 96x128 (WORK_DIR/stage1, 3500 steps, about 95 minutes on one thread): the receiver
#   learns the task (SPADE map conditioning, the coarse image's colours) where a step is cheap. Coarse images are
#   made once by the converter from the downscaled frame: 24x32 area downsample + raw HEVC at QP 35.
# Stage 2, native scale (WORK_DIR/run, STEPS, default 750: the shipped receiver): random 96x128 crops of the
#   full 360x480 frames, so textures and object sizes are those of the photographs the codec sees; coarse images
#   made on the fly exactly as the transmitter makes them (4x area downsample of the whole frame, HEVC), at a QP
#   drawn per sample from 30, 35, 40, 45 so one model serves the rates of the operating point (0.10-0.17 bpp at
#   360x480).
# Both stages: 90 % of the timesteps below 250 (the paper's sampler only visits t <= 200), bf16 autocast,
# 20 % guidance drops, EMA weights saved as a SPICPipeline.
# Packaging into the package's assets is a separate, explicit step: scripts/package_shipped_models.py.
set -euo pipefail
CAMVID_ROOT=${1:?usage: train_camvid_receiver.sh CAMVID_ROOT [WORK_DIR] [STEPS]}
WORK_DIR=${2:-spic-camvid-training}
STEPS=${3:-750}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK_DIR"

resume_flag() { if ls -d "$1"/checkpoint-* >/dev/null 2>&1; then echo --resume_from_checkpoint latest; fi; }
common=(--cpu --train_batch_size 8 --lr_scheduler constant_with_warmup --lr_warmup_steps 30 --max_grad_norm 1.0
        --ema_decay 0.995 --timestep_bias_max 250 --timestep_bias_fraction 0.9 --cfg_drop_rate 0.2
        --mixed_precision bf16 --channels_last --checkpointing_steps 250 --checkpoints_total_limit 2
        --validation_steps 0 --report_to none)

INIT=${INIT:-}
if [ -z "$INIT" ]; then
  if [ ! -f "$WORK_DIR/data-96x128/dataset_dict.json" ]; then
    "$PY" "$HERE/scripts/convert_camvid_to_datasets.py" --camvid_root "$CAMVID_ROOT" \
      --output_dir "$WORK_DIR/data-96x128" --precompute_coarse hevc:35 --coarse_image_size 96x128 \
      --coarse_downsample 4 --num_proc 2
  fi
  if [ ! -f "$WORK_DIR/stage1/unet/config.json" ]; then
    # shellcheck disable=SC2046
    "$PY" "$HERE/training/train_spic.py" "${common[@]}" --dataset_name_or_path "$WORK_DIR/data-96x128" \
      --model_config "$HERE/training/configs/camvid_receiver_unet.json" --resolution 96,128 --random_crop 48,64 \
      --learning_rate 4e-4 --max_train_steps 3500 --output_dir "$WORK_DIR/stage1" $(resume_flag "$WORK_DIR/stage1")
  fi
  INIT="$WORK_DIR/stage1"
fi

if [ ! -f "$WORK_DIR/data/dataset_dict.json" ]; then
  "$PY" "$HERE/scripts/convert_camvid_to_datasets.py" --camvid_root "$CAMVID_ROOT" --output_dir "$WORK_DIR/data" \
    --num_proc 2
fi
# shellcheck disable=SC2046
"$PY" "$HERE/training/train_spic.py" "${common[@]}" --dataset_name_or_path "$WORK_DIR/data" --init_from "$INIT" \
  --resolution 360,480 --random_crop 96,128 --coarse_codec hevc --coarse_qualities 30,35,40,45 \
  --learning_rate 2e-4 --max_train_steps "$STEPS" --output_dir "$WORK_DIR/run" $(resume_flag "$WORK_DIR/run")
