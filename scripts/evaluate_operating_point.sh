#!/usr/bin/env bash
# The paper's claim at its operating point (0.1-0.2 bpp) on real street photographs: CamVid test at its native
# 360x480, the shipped models and the shipped segmenter.
#
#   bash scripts/evaluate_operating_point.sh CAMVID_DATASET [OUT] [QUALITIES] [STRIDE]
#
# CAMVID_DATASET: scripts/convert_camvid_to_datasets.py's output (frames at their own size). QUALITIES: HEVC QPs of
# the coarse image, 4x down (default 30,35,40,45: four rates). STRIDE: the paper sampler decodes every STRIDE-th
# test frame (default 12: 20 of the 233 frames, both sequences).
# 1. OUT/fast: the fast student (its saved 2-step schedule) on every test frame at every rate, with the upsampled
#    coarse image, the map-only ablation (the student given a flat grey coarse image) and HEVC, WebP, JPEG XL, AVIF
#    and JPEG coding the whole frame at SPIC's rate;
# 2. OUT/paper: the paper's sampler (DDPM, 100-step spacing from t <= 200, guidance 1.5) on the subset, SPIC only;
# 3. OUT/table: operating_point.{md,json} and the rate plots (scripts/operating_point_table.py).
# PROCS (default 2) processes of one thread each share the frames (accelerate launch); PYTHON picks the interpreter.
# PARTS (default "fast paper table") runs some of the three, e.g. PARTS=paper on one machine and PARTS=fast on another,
# then PARTS=table where both folders are. Records are kept per frame: rerun the same command to resume.
set -euo pipefail
DATA=${1:?usage: evaluate_operating_point.sh CAMVID_DATASET [OUT] [QUALITIES] [STRIDE]}
OUT=${2:-eval_operating_point}
QUALITIES=${3:-30,35,40,45}
STRIDE=${4:-12}
PARTS=" ${PARTS:-fast paper table} "
has() { [[ "$PARTS" == *" $1 "* ]]; }
for part in $PARTS; do
  case $part in
    fast|paper|table) ;;
    *)
    echo "evaluate_operating_point.sh: unknown part '$part' in PARTS (fast, paper, table)" >&2; exit 2;;
  esac
done
PY=${PYTHON:-python}
PROCS=${PROCS:-2}
HERE=$(cd "$(dirname "$0")/.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BASE=${QUALITIES%%,*}
SWEEP=${QUALITIES#"$BASE"}; SWEEP=${SWEEP#,}
read -r FAST PAPER SEGMENTER < <("$PY" -c 'from spic_diffusers.demo import shipped_model_path as m, shipped_segmenter_path as s
print(m("fast"), m(), s())')

SUBSET="$OUT/subset"
if [ ! -f "$SUBSET/dataset_dict.json" ]; then
  "$PY" - "$DATA" "$SUBSET" "$STRIDE" <<'PYEOF'
import sys

import datasets

source, target, stride = sys.argv[1], sys.argv[2], int(sys.argv[3])
test = datasets.load_from_disk(source)["test"]
datasets.DatasetDict({"test": test.select(range(0, len(test), stride))}).save_to_disk(target)
PYEOF
fi

evaluate() {
  local sweep=()
  if [ -n "$SWEEP" ]; then sweep=(--sweep_qualities "$SWEEP"); fi
  if [ "$PROCS" -gt 1 ]; then
    ACCELERATE_USE_CPU=1 "$PY" -m accelerate.commands.launch --multi_gpu --num_processes "$PROCS" --num_machines 1 \
      --mixed_precision no --dynamo_backend no "$HERE/scripts/evaluate_spic.py" "$@" "${sweep[@]}"
  else
    "$PY" "$HERE/scripts/evaluate_spic.py" "$@" "${sweep[@]}"
  fi
}
common=(--split test --segmenter "$SEGMENTER" --coarse_codec hevc --coarse_quality "$BASE" --downsample 4 --no_lpips
        --quiet)
if has fast; then
evaluate --model "$FAST" --dataset "$DATA" --output_dir "$OUT/fast" "${common[@]}" --scheduler saved --map_only \
  --baseline_codecs hevc,webp,jxl,avif,jpeg
fi
if has paper; then
evaluate --model "$PAPER" --dataset "$SUBSET" --output_dir "$OUT/paper" "${common[@]}" --scheduler ddpm --steps 100 \
  --guidance 1.5 --max_timestep 200 --no_baselines
fi
if has table; then
"$PY" "$HERE/scripts/operating_point_table.py" --fast_run "$OUT/fast" --paper_run "$OUT/paper" --output_dir "$OUT/table"
fi
