#!/usr/bin/env bash
# Distil the shipped CamVid receiver into a single-pass student of K steps (the fast model, spic-camvid-fast), at the
# frames' native 360x480 scale.
#
#   bash scripts/distill_camvid_receiver.sh DATA WORK_DIR K [INIT] [STEPS] [SAMPLES]
#
# DATA: CamVid in datasets format at its own 360x480 (scripts/convert_camvid_to_datasets.py, or WORK_DIR/data of
#       train_camvid_receiver.sh). K: the student's steps (2 or 1; 4 also works). INIT: a student folder to start
#       from (default: the teacher). The result is WORK_DIR/fast-K, a SPICPipeline folder.
# TEACHER (environment) picks the teacher folder (default: the shipped spic-camvid); PYTHON the interpreter.
# The teacher is the paper's sampler made deterministic (DDIM, guidance 1.5, 20 steps from t = 192, 40 UNet
# evaluations) from the coarse image noised to t = 192. It runs once per training frame (the first SAMPLES rows,
# default 64) on a 128x192 crop of it, fixed per frame, whose coarse image is coded (4x area down + HEVC) at a QP
# drawn per frame from 30, 35, 40, 45, the rates the student serves; the trajectories are kept in
# WORK_DIR/teacher-SAMPLES.safetensors for runs of other K. Then STEPS (default 300) updates on 96x128 crops of
# those states. Two CPU threads (OMP_NUM_THREADS overrides): about 10 minutes of teacher and 12 of student for the
# defaults on a 2-core machine with native bf16. Checkpoints every 50 steps: rerun the same command to resume.
# Packaging into the package's assets is a separate, explicit step: scripts/package_shipped_models.py --fast_run.
set -euo pipefail
DATA=${1:?usage: distill_camvid_receiver.sh DATA WORK_DIR K [INIT] [STEPS] [SAMPLES]}
WORK_DIR=${2:?usage: distill_camvid_receiver.sh DATA WORK_DIR K [INIT] [STEPS] [SAMPLES]}
K=${3:?usage: distill_camvid_receiver.sh DATA WORK_DIR K [INIT] [STEPS] [SAMPLES]}
INIT=${4:-}
STEPS=${5:-300}
SAMPLES=${6:-64}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
TEACHER=${TEACHER:-$HERE/src/spic_diffusers/assets/spic-camvid}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# bf16 autocast halves the teacher's time on CPUs with native bf16 and is tens of times slower without it
# (measured: 38 s against 0.8 s per UNet evaluation on an AVX2-only AMD EPYC): the pipeline's native_bf16() picks.
if [ -z "${TEACHER_DTYPE:-}" ]; then
  TEACHER_DTYPE=$("$PY" -c "from spic_diffusers.pipelines.pipeline_spic import native_bf16
print('bf16' if native_bf16() else 'fp32')")
fi
OUT="$WORK_DIR/fast-$K"
mkdir -p "$WORK_DIR"

extra=()
if [ -n "$INIT" ]; then extra+=(--student_init "$INIT"); fi
if ls -d "$OUT"/checkpoint-* >/dev/null 2>&1; then extra+=(--resume_from_checkpoint latest); fi
"$PY" "$HERE/training/distill_spic.py" --cpu --teacher "$TEACHER" --dataset_name_or_path "$DATA" \
  --resolution 360,480 --coarse_source on_the_fly --coarse_codec hevc --coarse_qualities 30,35,40,45 \
  --teacher_crop 128,192 --random_crop 96,128 --channels_last \
  --num_student_steps "$K" --teacher_dtype "$TEACHER_DTYPE" --teacher_cache "$WORK_DIR/teacher-$SAMPLES.safetensors" \
  --max_train_samples "$SAMPLES" --no-random_flip \
  --train_batch_size 8 --max_train_steps "$STEPS" --learning_rate 5e-5 --lr_warmup_steps 20 \
  --mixed_precision bf16 --ema_decay 0.995 --checkpointing_steps 50 --output_dir "$OUT" "${extra[@]}"
