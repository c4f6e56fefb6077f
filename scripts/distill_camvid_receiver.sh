#!/usr/bin/env bash
# Distil the shipped CamVid receiver into a single-pass student of K steps (the `--fast` model, spic-camvid-fast).
#
#   bash scripts/distill_camvid_receiver.sh DATA WORK_DIR K [INIT] [STEPS] [SAMPLES]
#
# DATA: CamVid in datasets format with coarse images at 96x128 (scripts/convert_camvid_to_datasets.py
#       --precompute_coarse hevc:35 --coarse_image_size 96x128, or WORK_DIR/data of train_camvid_receiver.sh).
# K: the student's steps (4, 2 or 1). INIT: a student folder to start from (a 4-step student for K = 2, a 2-step
#    one for K = 1: progressive); default the teacher. The result is WORK_DIR/fast-K, a SPICPipeline folder.
# The teacher starts from the coarse image noised to t = 192 (distill_spic.py --start_noise forward, its default).
# TEACHER (environment) picks the teacher folder (default: the shipped spic-camvid-small); PYTHON the interpreter.
# One CPU thread (OMP_NUM_THREADS overrides): the teacher's guided trajectory is computed once per training frame
# (the first SAMPLES rows, default 96) and kept in WORK_DIR/teacher-SAMPLES.safetensors, which the runs for the
# other K reuse (64 frames: 22 minutes on 2 threads in fp32), then STEPS (default 300) updates on 48x64 crops of
# the whole-frame states (about 3 s each on 2 threads). The shipped student: K = 4, STEPS 300, SAMPLES 64.
# Checkpoints every 50 steps: rerun the same command to resume an interrupted run.
# Packaging into the package's assets is a separate, explicit step: scripts/package_shipped_models.py --fast_run.
set -euo pipefail
DATA=${1:?usage: distill_camvid_receiver.sh DATA WORK_DIR K [INIT] [STEPS] [SAMPLES]}
WORK_DIR=${2:?usage: distill_camvid_receiver.sh DATA WORK_DIR K [INIT] [STEPS] [SAMPLES]}
K=${3:?usage: distill_camvid_receiver.sh DATA WORK_DIR K [INIT] [STEPS] [SAMPLES]}
INIT=${4:-}
STEPS=${5:-300}
SAMPLES=${6:-96}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")/.." && pwd)
TEACHER=${TEACHER:-$HERE/src/spic_diffusers/assets/spic-camvid-small}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
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
  --num_student_steps "$K" --teacher_dtype "$TEACHER_DTYPE" --teacher_cache "$WORK_DIR/teacher-$SAMPLES.safetensors" \
  --max_train_samples "$SAMPLES" --no-random_flip \
  --random_crop 48,64 --train_batch_size 8 --max_train_steps "$STEPS" --learning_rate 5e-5 --lr_warmup_steps 20 \
  --ema_decay 0.995 --checkpointing_steps 50 --output_dir "$OUT" "${extra[@]}"
