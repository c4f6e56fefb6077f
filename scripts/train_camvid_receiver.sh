#!/usr/bin/env bash
# Train the SPIC receiver shipped in the package (spic-camvid-small) on real CamVid street photographs.
#
#   bash scripts/train_camvid_receiver.sh CAMVID_ROOT [WORK_DIR] [STEPS]
#
# CAMVID_ROOT: SegNet's CamVid folder (train/ trainannot/ val/ valannot/ test/ testannot/).
# PYTHON picks the interpreter (default: python). Steps:
# 1. CamVid -> datasets format in Cityscapes train ids, with coarse images made by the codec from the frame
#    resized to 96x128 (24x32 area downsample + raw HEVC at QP 35): WORK_DIR/data;
# 2. training/train_spic.py on one CPU thread: 48x64 random crops (on the coarse grid), 90 % of the timesteps
#    below 250 (the paper's sampler only visits t <= 192), bf16 autocast, EMA weights saved as a SPICPipeline
#    in WORK_DIR/run. Checkpoints every 250 steps: rerun the same command to resume an interrupted run.
# Packaging into the package's assets is a separate, explicit step: scripts/package_shipped_models.py.
set -euo pipefail
CAMVID_ROOT=${1:?usage: train_camvid_receiver.sh CAMVID_ROOT [WORK_DIR] [STEPS]}
WORK_DIR=${2:-spic-camvid-training}
STEPS=${3:-3500}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK_DIR"

if [ ! -f "$WORK_DIR/data/dataset_dict.json" ]; then
  "$PY" "$HERE/scripts/convert_camvid_to_datasets.py" --camvid_root "$CAMVID_ROOT" --output_dir "$WORK_DIR/data" \
    --precompute_coarse hevc:35 --coarse_image_size 96x128 --coarse_downsample 4 --num_proc 2
fi

resume=()
if ls -d "$WORK_DIR"/run/checkpoint-* >/dev/null 2>&1; then resume=(--resume_from_checkpoint latest); fi
"$PY" "$HERE/training/train_spic.py" --cpu --dataset_name_or_path "$WORK_DIR/data" \
  --model_config "$HERE/training/configs/camvid_receiver_unet.json" --resolution 96,128 --random_crop 48,64 \
  --train_batch_size 8 --learning_rate 4e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 30 \
  --max_grad_norm 1.0 --ema_decay 0.995 --timestep_bias_max 250 --timestep_bias_fraction 0.9 \
  --cfg_drop_rate 0.2 --mixed_precision bf16 --max_train_steps "$STEPS" --checkpointing_steps 250 \
  --checkpoints_total_limit 2 --validation_steps 0 --report_to none --output_dir "$WORK_DIR/run" "${resume[@]}"
