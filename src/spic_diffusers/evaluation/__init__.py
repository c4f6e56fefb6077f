"""End-to-end evaluation of SPIC: code each image, decode it with the diffusion pipeline, score it.

For every *setting* (coarse codec, quality, downsample factor, scheduler, steps, guidance) each image is
encoded into one SPIC stream, decoded by the pipeline and compared with the original. Baselines run on the
same images at the same rate: the decoded coarse image upsampled bicubically, and whole-image coding with
every available codec at the quality whose size best matches SPIC's stream from below.

Per-image results are stored one JSON file per (setting, image) under ``records/`` so an interrupted run
resumes where it stopped; aggregates (set-level mIoU, FID/KID over the set, means of the rest), a Markdown
table, rate curves and a sample grid are rebuilt from those records at the end. Under ``accelerate launch``
the images are shared out over the processes and the main process writes the same outputs.

One job per module: :mod:`.settings` (what a run is), :mod:`.cli` (flags), :mod:`.inputs` (dataset, pipeline,
segmenter), :mod:`.baselines` (rate matching), :mod:`.records` (output folder, resumable records),
:mod:`.runner` (per-image work), :mod:`.distributed` (sharding and gathering), :mod:`.aggregate` (rows),
:mod:`.report` (tables, plots, grid).
"""

from ..pipelines.schedulers import SCHEDULER_CLASSES
from .aggregate import config_dict
from ..image_processing import upsample_bicubic
from .baselines import available_codecs, match_rate, quality_candidates
from .cli import build_parser, config_from_args, main
from .inputs import example_arrays, load_eval_dataset, load_segmenter
from .records import RESULTS_MARKER, RecordStore, prepare_output_dir
from .report import markdown_table, plot_rate_curves, plot_sampler_sweep, sample_grid, write_outputs
from .runner import Evaluator, image_scores, run_evaluation
from .settings import (
    COARSE_BASELINE,
    MAP_ONLY,
    ORIGINAL,
    SAVED_SAMPLER,
    SPIC,
    TRANSMIT_MAPS,
    EvalConfig,
    EvalSetting,
    EvaluationError,
    RateSetting,
    SamplerSetting,
    check_scheduler_name,
    make_scheduler,
    parse_number_list,
    parse_sampler_sweep,
)

__all__ = [
    "COARSE_BASELINE",
    "MAP_ONLY",
    "ORIGINAL",
    "SAVED_SAMPLER",
    "RESULTS_MARKER",
    "SCHEDULER_CLASSES",
    "SPIC",
    "TRANSMIT_MAPS",
    "EvalConfig",
    "EvalSetting",
    "EvaluationError",
    "Evaluator",
    "RateSetting",
    "RecordStore",
    "SamplerSetting",
    "available_codecs",
    "build_parser",
    "check_scheduler_name",
    "config_dict",
    "config_from_args",
    "example_arrays",
    "image_scores",
    "load_eval_dataset",
    "load_segmenter",
    "main",
    "make_scheduler",
    "markdown_table",
    "match_rate",
    "parse_number_list",
    "parse_sampler_sweep",
    "plot_rate_curves",
    "plot_sampler_sweep",
    "prepare_output_dir",
    "quality_candidates",
    "run_evaluation",
    "sample_grid",
    "upsample_bicubic",
    "write_outputs",
]
