#!/usr/bin/env bash
# The paper's claim on real street photographs: SPIC against the upsampled coarse image and against every
# whole-image codec at a matched rate, on CamVid test frames, with the shipped segmenter.
#
#   bash scripts/evaluate_camvid.sh CAMVID_DATASET [OUTPUT_DIR] [STRIDE] [QUALITIES]
#
# CAMVID_DATASET: scripts/convert_camvid_to_datasets.py's output. STRIDE: every STRIDE-th test frame (default 8:
# 30 of the 233 frames, both sequences; 1 = all). QUALITIES: HEVC QPs of the coarse image (default 30,35,40; three
# rates). Frames are coded at 96x128, the shipped receiver's size; decoding uses the paper's sampler (DDPM,
# 100-step spacing from t = 192, guidance 1.5). Writes OUTPUT_DIR/results.{json,md}, per-image records, plots.
set -euo pipefail
DATA=${1:?usage: evaluate_camvid.sh CAMVID_DATASET [OUTPUT_DIR] [STRIDE] [QUALITIES]}
OUT=${2:-eval_camvid}
STRIDE=${3:-8}
QUALITIES=${4:-30,35,40}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SUBSET="$OUT.frames"
if [ ! -f "$SUBSET/dataset_dict.json" ]; then
  "$PY" - "$DATA" "$SUBSET" "$STRIDE" <<'PYEOF'
import sys

import datasets

from spic_diffusers.data import resize_image, resize_map

source, target, stride = sys.argv[1], sys.argv[2], int(sys.argv[3])
test = datasets.load_from_disk(source)["test"]
test = test.select(range(0, len(test), stride))


def to_96x128(row):
    import numpy as np

    row["image"] = resize_image(np.asarray(row["image"].convert("RGB")), (96, 128))
    row["semantic_map"] = resize_map(np.asarray(row["semantic_map"]), (96, 128))
    return row


test = test.map(to_96x128, features=test.features)
datasets.DatasetDict({"test": test}).save_to_disk(target)
print(f"{len(test)} CamVid test frames (every {stride}th), 96x128 -> {target}")
PYEOF
fi
MODEL=$("$PY" -c 'from spic_diffusers.demo import shipped_model_path as p; print(p())')
SEGMENTER=$("$PY" -c 'from spic_diffusers.demo import shipped_segmenter_path as p; print(p())')
"$PY" "$HERE/scripts/evaluate_spic.py" --model "$MODEL" --dataset "$SUBSET" --split test --segmenter "$SEGMENTER" \
  --coarse_codec hevc --coarse_quality 35 --sweep_qualities "$QUALITIES" --no_lpips --output_dir "$OUT"
