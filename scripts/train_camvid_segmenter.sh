#!/usr/bin/env bash
# Train the segmentation network shipped in the package (segformer-camvid-tiny) on CamVid, in Cityscapes train ids.
#
#   bash scripts/train_camvid_segmenter.sh CAMVID_DATASET [OUTPUT_DIR] [STEPS]
#
# CAMVID_DATASET: the output of scripts/convert_camvid_to_datasets.py (train / validation / test splits).
# A SegFormer with MiT-b0's four stages at a quarter of its width (0.6 M parameters) from random weights, at
# 192x256, on one CPU thread; half of the samples are degraded by a random down-and-up scaling so that it also
# reads 96x128 reconstructions. The best validation mIoU picks the weights. Rerun to resume.
set -euo pipefail
DATA=${1:?usage: train_camvid_segmenter.sh CAMVID_DATASET [OUTPUT_DIR] [STEPS]}
OUT=${2:-segformer-camvid-training}
STEPS=${3:-1500}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
resume=()
if ls -d "$OUT"/checkpoint-* >/dev/null 2>&1; then resume=(--resume_from_checkpoint latest); fi
"$PY" "$HERE/training/train_segmenter.py" --cpu --dataset_name_or_path "$DATA" --output_dir "$OUT" \
  --model_size tiny --input_size 192,256 --train_batch_size 8 --learning_rate 1e-3 --lr_warmup_steps 100 \
  --max_train_steps "$STEPS" --validation_steps 250 --checkpointing_steps 250 --low_res_fraction 0.5 "${resume[@]}"
