#!/usr/bin/env bash
# Train the segmentation network shipped in the package (upernet-camvid) on CamVid, in Cityscapes train ids.
#
#   bash scripts/train_camvid_segmenter.sh CAMVID_DATASET [OUTPUT_DIR] [STEPS]
#
# CAMVID_DATASET: the output of scripts/convert_camvid_to_datasets.py (train / validation / test splits).
# A UperNet on a half-width ResNet-18 (3.4 M parameters) from random weights, ENet's recipe: 288x384 crops of the
# 360x480 frames scaled 0.5-2x (one side stretched up to 1.25x), flips, colour jitter, a quarter of the samples
# degraded by a down-and-up scaling (so it also reads coarse images and reconstructions), class weights
# 1/ln(1.02 + p), AdamW with a polynomial (0.9) decay. The validation split picks the weights. Two CPU threads
# (OMP_NUM_THREADS overrides); rerun the same command to resume from the last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_camvid_segmenter.sh CAMVID_DATASET [OUTPUT_DIR] [STEPS]}
OUT=${2:-upernet-camvid-training}
STEPS=${3:-4000}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
resume=()
if ls -d "$OUT"/checkpoint-* >/dev/null 2>&1; then resume=(--resume_from_checkpoint latest); fi
"$PY" "$HERE/training/train_segmenter.py" --cpu --dataset_name_or_path "$DATA" --output_dir "$OUT" \
  --architecture upernet --model_size r18-half --input_size 360,480 --crop_size 288,384 --scale_range 0.5,2.0 \
  --aspect_jitter 1.25 --colour_jitter 0.25 --low_res_fraction 0.25 --class_weighting enet \
  --train_batch_size 8 --learning_rate 2e-3 --lr_power 0.9 --lr_warmup_steps 200 \
  --max_train_steps "$STEPS" --validation_steps 250 --checkpointing_steps 250 "${resume[@]}"
