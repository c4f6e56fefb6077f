"""Publishing SPIC pipelines on the Hugging Face Hub: the model card and the upload.

Three layers, each usable alone:

- :func:`render_model_card` fills the card template (``model_card.md``) from a pipeline's config, the codec
  settings it was trained for, the training recipe and evaluation results, and returns the README text
  (YAML metadata in the Hub's conventions, including ``model-index`` when results are given);
- :func:`save_for_hub` writes the exact folder that would be uploaded: ``save_pretrained`` + ``README.md``;
- :func:`push_to_hub` writes that folder to a temporary directory and uploads it with ``huggingface_hub``.

``eval_results`` may be a flat mapping of metric name to value (``{"psnr": 21.3, "bpp": 0.52}``), a mapping
with ``"metrics"`` and optional ``"dataset"`` (``{"name", "type", "split"}``) and ``"settings"`` keys, or a
list of such mappings (one per evaluated setting or dataset).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from .codec.coarse import DEFAULT_COARSE_CODEC, DEFAULT_COARSE_QUALITY
from .codec.map_coders import DEFAULT_MAP_CODER
from .sizes import as_hw

TEMPLATE_NAME = "model_card_template.md"
DEFAULT_TAGS = ("spic", "semantic-communication", "image-compression", "diffusion", "diffusers")
PIPELINE_TAG = "image-to-image"
DEFAULT_LICENSE = "apache-2.0"
# Datasets whose terms bind weights trained on them: the card's licence follows the data, not the code.
DATASET_LICENSES = {"camvid": "cc-by-nc-4.0"}
# The transmitter's settings the model expects; the paper uses BPG at QP 35 (raw HEVC here is the same coder).
DEFAULT_CODEC = {"coarse_codec": DEFAULT_COARSE_CODEC, "coarse_quality": DEFAULT_COARSE_QUALITY, "downsample": 4,
                 "map_coder": DEFAULT_MAP_CODER}

# Known metrics: Hub metric id, display name, unit, whether higher is better.
METRICS: dict[str, tuple[str, str, str, bool]] = {
    "psnr": ("psnr", "PSNR", "dB", True),
    "ssim": ("ssim", "SSIM", "", True),
    "ms_ssim": ("ms_ssim", "MS-SSIM", "", True),
    "lpips": ("lpips", "LPIPS", "", False),
    "miou": ("mean_iou", "mIoU", "", True),
    "mean_iou": ("mean_iou", "mIoU", "", True),
    "pixel_accuracy": ("accuracy", "Pixel accuracy", "", True),
    "fid": ("fid", "FID", "", False),
    "kid": ("kid", "KID", "", False),
    "bpp": ("bpp", "Rate", "bpp", False),
    "boundary_psnr": ("boundary_psnr", "Boundary PSNR", "dB", True),
    "region_colour_error": ("region_colour_error", "Region colour error", "", False),
}
BASELINE_NAMES = {"_coarse": "upsampled coarse image", "_baseline": "baseline"}

BASELINE_SUFFIXES = tuple(BASELINE_NAMES)

LIMITATIONS_DEFAULT = (
    "- Trained at one image size and one coarse-image setting (see above); other sizes and codecs work "
    "but are outside what the model has seen."
)


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub could not be reached (offline, DNS, proxy, timeout); local outputs are unaffected."""


# Connection failures of the HTTP stacks huggingface_hub and datasets use, recognised by class name so that
# no particular HTTP library has to be importable.
_NETWORK_ERROR_NAMES = {
    "ConnectError", "ConnectTimeout", "ConnectionError", "NetworkError", "OfflineModeIsEnabled", "ProxyError",
    "ReadTimeout", "Timeout", "TimeoutException", "gaierror",
}  # fmt: skip


def _network_error(err: BaseException | None) -> BaseException | None:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (ConnectionError, TimeoutError)) or any(
            cls.__name__ in _NETWORK_ERROR_NAMES for cls in type(err).__mro__
        ):
            return err
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def reporting_unreachable_hub(local_output: str | os.PathLike | None = None):
    """Turn a connection failure inside the block into one :class:`HubUnreachableError` line that says the
    local output (already written) is complete, or that nothing was uploaded; other errors pass through."""
    try:
        yield
    except Exception as err:
        cause = _network_error(err)
        if cause is None:
            raise
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        if local_output is None:
            after = "nothing was uploaded (save_for_hub writes the folder to upload later)"
        else:
            after = f"the local output in {local_output} is complete and can be uploaded later"
        # `from None`: the HTTP stack's dozens of frames say nothing the user can act on.
        raise HubUnreachableError(f"the Hugging Face Hub cannot be reached ({reason}); {after}") from None


class ModelCardError(ValueError):
    """Inputs that cannot be turned into a model card (bad evaluation results, unknown template fields)."""


# ----------------------------------------------------------------------------------------------------------
# Evaluation results
# ----------------------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def normalize_eval_results(eval_results: Any) -> list[dict[str, Any]]:
    """Turn any accepted ``eval_results`` form into ``[{"dataset": {...}, "metrics": {...}, "settings": {...}}]``.

    Raises :class:`ModelCardError` for values that are not finite numbers, so a card never shows NaN.
    """
    if eval_results is None:
        return []
    if isinstance(eval_results, Mapping):
        entries = [eval_results]
    elif isinstance(eval_results, Sequence) and not isinstance(eval_results, (str, bytes)):
        entries = list(eval_results)
    else:
        raise ModelCardError(f"eval_results must be a mapping or a list of mappings, got {type(eval_results).__name__}")
    normalized = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ModelCardError(f"eval_results[{index}] must be a mapping, got {type(entry).__name__}")
        if "metrics" in entry:
            metrics, dataset, settings = entry["metrics"], entry.get("dataset") or {}, entry.get("settings") or {}
        else:
            metrics, dataset, settings = entry, {}, {}
        if not isinstance(metrics, Mapping) or not metrics:
            raise ModelCardError(f"eval_results[{index}] has no metrics")
        if not isinstance(dataset, Mapping) or not isinstance(settings, Mapping):
            raise ModelCardError(f"eval_results[{index}]: 'dataset' and 'settings' must be mappings")
        clean = {}
        for name, value in metrics.items():
            if not _is_number(value):
                raise ModelCardError(f"eval_results[{index}] metric {name!r} must be a finite number, got {value!r}")
            clean[str(name)] = float(value)
        normalized.append({"dataset": dict(dataset), "metrics": clean, "settings": dict(settings)})
    return normalized


def _metric_label(name: str) -> str:
    suffix = next((end for end in BASELINE_NAMES if name.endswith(end) and name[: -len(end)] in METRICS), None)
    if suffix is not None:
        _, label, unit, higher = METRICS[name[: -len(suffix)]]
        label = f"{label}, {BASELINE_NAMES[suffix]}"
    elif name in METRICS:
        _, label, unit, higher = METRICS[name]
    else:
        label, unit, higher = name, "", None
    arrow = "" if higher is None else (" ↑" if higher else " ↓")
    return f"{label}{f' [{unit}]' if unit else ''}{arrow}"


def _format_value(value: float) -> str:
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _evaluation_table(results: list[dict[str, Any]], default_dataset: str) -> str:
    names: list[str] = []
    for entry in results:
        names += [n for n in entry["metrics"] if n not in names]
    header = "| Dataset | Split | Setting | " + " | ".join(_metric_label(n) for n in names) + " |"
    lines = [header, "|" + "---|" * (3 + len(names))]
    for entry in results:
        dataset = entry["dataset"]
        setting = ", ".join(f"{k}={v}" for k, v in entry["settings"].items()) or "default"
        cells = [_format_value(entry["metrics"][n]) if n in entry["metrics"] else "–" for n in names]
        lines.append(
            f"| {dataset.get('name', default_dataset)} | {dataset.get('split', '–')} | {setting} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def is_baseline_metric(name: str) -> bool:
    """Figures of a baseline (``psnr_coarse``...) go in the table but not in ``model-index``."""
    return name.endswith(BASELINE_SUFFIXES)


def _metric_ids(results: list[dict[str, Any]]) -> list[str]:
    """The Hub metric ids of the model's own figures in ``results`` (baselines left out), in first-seen order."""
    return list(dict.fromkeys(METRICS.get(name, (name,))[0] for entry in results for name in entry["metrics"]
                              if not is_baseline_metric(name)))


def _hub_eval_results(results: list[dict[str, Any]], default_dataset: str):
    from huggingface_hub import EvalResult

    out = []
    for entry in results:
        dataset = entry["dataset"]
        for name, value in entry["metrics"].items():
            if is_baseline_metric(name):
                continue
            metric_type = METRICS.get(name, (name,))[0]
            out.append(
                EvalResult(
                    task_type=PIPELINE_TAG,
                    task_name="Semantic-preserving image coding",
                    dataset_type=str(dataset.get("type", dataset.get("name", default_dataset))),
                    dataset_name=str(dataset.get("name", default_dataset)),
                    dataset_split=dataset.get("split"),
                    # The setting (a rate, a sampler) tells apart results of one model on one split.
                    dataset_config=", ".join(f"{k}={v}" for k, v in entry["settings"].items()) or None,
                    metric_type=metric_type,
                    metric_name=_metric_label(name).rstrip(" ↑↓"),
                    metric_value=round(value, 4),
                )
            )
    return out


# ----------------------------------------------------------------------------------------------------------
# The card
# ----------------------------------------------------------------------------------------------------------


def model_card_template() -> str:
    """The card template shipped with the package (the same text as ``model_card.md`` in the repository)."""
    return resources.files("spic_diffusers").joinpath("assets", TEMPLATE_NAME).read_text(encoding="utf-8")


def _unet_facts(pipeline) -> dict[str, Any]:
    unet = getattr(pipeline, "unet", pipeline)
    config = unet.config
    sample_size = as_hw(config.sample_size, "sample_size")
    n_params = sum(p.numel() for p in unet.parameters())
    size_multiple = 2 ** (len(config.block_out_channels) - 1)
    return {
        "sample_size": f"{sample_size[0]}x{sample_size[1]}",
        "size_multiple": size_multiple,
        "num_parameters": f"{n_params / 1e6:.2f} M" if n_params >= 1e5 else f"{n_params:,}",
        "num_semantic_channels": config.num_semantic_channels,
        "block_out_channels": ", ".join(str(c) for c in config.block_out_channels),
        "layers_per_block": config.layers_per_block,
        "attention_downsample_factors": ", ".join(str(f) for f in config.attention_downsample_factors) or "none",
    }


def _scheduler_facts(pipeline) -> dict[str, str]:
    scheduler = getattr(pipeline, "scheduler", None)
    if scheduler is None:
        return {"scheduler_class": "DDPMScheduler", "scheduler_summary": "the paper's linear schedule"}
    config = scheduler.config
    parts = [f"{config.get('num_train_timesteps')} training steps", f"{config.get('beta_schedule')} betas"]
    if config.get("variance_type"):
        parts.append(f"variance {config.get('variance_type')}")
    if config.get("timestep_spacing"):
        parts.append(f"{config.get('timestep_spacing')} spacing")
    return {"scheduler_class": type(scheduler).__name__, "scheduler_summary": ", ".join(parts)}


def _sampler_facts(pipeline) -> dict[str, str]:
    """How the card's example decodes: a distilled student's saved schedule, else the paper's sampler spelled out."""
    config = getattr(pipeline, "config", None)
    timesteps = config.get("default_timesteps") if config is not None and hasattr(config, "get") else None
    if timesteps:
        scale = config.get("default_guidance_scale")
        passes = "one pass" if scale in (None, 1.0) else f"guidance {scale:g}"
        start = config.get("default_start_noise") or "none"
        start = "" if start == "none" else f", from the coarse image {start}-noised to the first step"
        return {"sampler_comment": f"this model's own schedule, saved in its config: {len(timesteps)} step(s) at "
                                   f"t = {list(timesteps)}, {passes} each{start}",
                "sampler_arguments": ""}
    return {"sampler_comment": "the paper's sampler: DDPM, 100-step spacing, t <= 200, guidance 1.5",
            "sampler_arguments": "guidance_scale=1.5, num_inference_steps=100, max_timestep=200,\n               "}


def _training_text(training: Any) -> str:
    if training is None:
        return "No training details were given for this checkpoint."
    if isinstance(training, str):
        return training.strip()
    if not isinstance(training, Mapping):
        raise ModelCardError(f"training must be text or a mapping, got {type(training).__name__}")
    lines = ["| | |", "|---|---|"]
    for key, value in training.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        lines.append(f"| {key} | {str(value).replace('|', '/')} |")
    return "\n".join(lines)


def default_license(datasets: str | Sequence[str] | None = None) -> str:
    """The licence of weights trained on ``datasets``: the first restrictive dataset's (CamVid: CC BY-NC 4.0),
    else the code's Apache-2.0."""
    if isinstance(datasets, str):
        datasets = [datasets]
    for name in datasets or []:
        key = str(name).rstrip("/").split("/")[-1].lower()
        for dataset, license in DATASET_LICENSES.items():
            if dataset in key:
                return license
    return DEFAULT_LICENSE


def loaded_card_license(pipeline) -> str | None:
    """The licence the card of the folder ``pipeline`` was loaded from declares (None when it has none): weights
    re-saved from a shipped or downloaded folder keep its terms."""
    import yaml

    path = getattr(pipeline, "name_or_path", None) or getattr(getattr(pipeline, "config", None), "_name_or_path", None)
    card = Path(path) / "README.md" if path else None
    if card is None or not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n") or text.count("---\n") < 2:
        return None
    try:
        meta = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    except yaml.YAMLError:
        return None
    license = meta.get("license") if isinstance(meta, dict) else None
    return license if isinstance(license, str) else None


def render_model_card(
    pipeline,
    *,
    model_id: str | None = None,
    title: str | None = None,
    summary: str | None = None,
    source: str | None = None,
    eval_results: Any = None,
    eval_dataset_name: str | None = None,
    training: str | Mapping[str, Any] | None = None,
    codec: Mapping[str, Any] | None = None,
    datasets: str | Sequence[str] | None = None,
    license: str | None = None,
    tags: Sequence[str] = (),
    limitations: str | None = None,
    base_model: str | None = None,
    template: str | None = None,
) -> str:
    """Fill the model card for ``pipeline`` (a ``SPICPipeline``, or a bare ``SPICUNet2DModel``).

    Args:
        model_id: the Hub id (or local path) users load it from; appears in the usage examples.
        source: where the weights come from (e.g. "converted from the original SPIC checkpoint").
        eval_results: evaluation figures (see the module docstring); they fill the evaluation table and the
            ``model-index`` metadata.
        training: the training recipe, as text or a mapping of setting -> value.
        codec: the transmitter settings the model was trained for (defaults: ``DEFAULT_CODEC``).
        datasets: Hub dataset ids for the metadata.
        license: the weights' Hub licence id (default: the licence of the card the pipeline was loaded with,
            else the training data's, see :func:`default_license`).
        template: card template text (default: the packaged ``model_card.md``).

    Returns the README text: YAML front matter then Markdown.
    """
    from huggingface_hub import ModelCardData
    from jinja2 import StrictUndefined, Template

    model_id = model_id or "path/to/spic-model"
    name = title or model_id.rstrip("/").split("/")[-1]
    codec_settings = {**DEFAULT_CODEC, **(dict(codec) if codec else {})}
    unknown = set(codec_settings) - set(DEFAULT_CODEC)
    if unknown:
        raise ModelCardError(f"unknown codec settings {sorted(unknown)}; use {sorted(DEFAULT_CODEC)}")
    results = normalize_eval_results(eval_results)
    if isinstance(datasets, str):
        datasets = [datasets]
    datasets = list(datasets or [])
    license = license or loaded_card_license(pipeline) or default_license(datasets)
    default_dataset = eval_dataset_name or (datasets[0] if datasets else "evaluation set")

    metric_ids = _metric_ids(results)
    card_data = ModelCardData(
        library_name="diffusers",
        pipeline_tag=PIPELINE_TAG,
        license=license,
        tags=list(dict.fromkeys([*DEFAULT_TAGS, *tags])),
        datasets=datasets or None,
        metrics=metric_ids or None,
        base_model=base_model,
        model_name=name if results else None,
        eval_results=_hub_eval_results(results, default_dataset) or None,
    )
    if results:
        evaluation_text = _evaluation_table(results, default_dataset)
    else:
        evaluation_text = (
            "No evaluation results were given for this checkpoint; `scripts/evaluate_spic.py` measures rate, "
            "mIoU, FID and PSNR against the coarse-image and whole-image codec baselines."
        )
    values = {
        "card_data": card_data.to_yaml(),
        "title": name,
        "summary": summary or f"A SPIC receiver for 🧨 diffusers: `{model_id}`.",
        "model_id": model_id,
        "source": source or "trained with spic-diffusers",
        "training_text": _training_text(training),
        "evaluation_text": evaluation_text,
        "limitations": limitations or LIMITATIONS_DEFAULT,
        **{k: codec_settings[k] for k in DEFAULT_CODEC},
        **_unet_facts(pipeline),
        **_scheduler_facts(pipeline),
        **_sampler_facts(pipeline),
    }
    text = Template(template if template is not None else model_card_template(), undefined=StrictUndefined,
                    keep_trailing_newline=True).render(**values)
    return text


def set_card_evaluation(
    card_path: str | os.PathLike,
    evaluation_text: str,
    eval_results: Any = None,
    eval_dataset_name: str = "evaluation set",
) -> Path:
    """Replace the ``## Evaluation`` section of an existing card and, with ``eval_results``, its ``model-index``.

    Evaluations often finish after a model ships; this updates its card in place without re-rendering what the
    training run wrote (recipe, limitations). ``card_path`` is a card file or a folder holding ``README.md``.
    """
    from huggingface_hub import ModelCard

    path = Path(card_path)
    if path.is_dir():
        path = path / "README.md"
    if not path.is_file():
        raise ModelCardError(f"{path}: no model card to update")
    results = normalize_eval_results(eval_results)
    card = ModelCard(path.read_text(encoding="utf-8"))
    lines = card.text.split("\n")
    try:
        start = lines.index("## Evaluation")
    except ValueError:
        raise ModelCardError(f"{path}: the card has no '## Evaluation' section") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    lines[start + 1 : end] = ["", evaluation_text.strip(), ""]
    card.text = "\n".join(lines)
    if results:
        card.data.eval_results = _hub_eval_results(results, eval_dataset_name)
        card.data.model_name = card.data.model_name or path.parent.name
        card.data.metrics = list(dict.fromkeys([*(card.data.metrics or []), *_metric_ids(results)]))
    path.write_text(str(card), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------------
# The folder and the upload
# ----------------------------------------------------------------------------------------------------------


def save_for_hub(
    pipeline,
    folder: str | os.PathLike,
    *,
    eval_results: Any = None,
    license: str | None = None,
    overwrite: bool = False,
    safe_serialization: bool = True,
    **card_kwargs: Any,
) -> Path:
    """Write the folder that :func:`push_to_hub` uploads: ``pipeline.save_pretrained`` + ``README.md``.

    ``license`` is the weights' Hub licence id; by default it is the one the card of the folder the pipeline was
    loaded from declares (the shipped CamVid models: ``cc-by-nc-4.0``), else it follows the training data
    (``datasets=["camvid"]`` gives ``cc-by-nc-4.0``), else Apache-2.0 (:func:`default_license`). ``card_kwargs`` go to
    :func:`render_model_card`. An existing non-empty ``folder`` is refused unless
    ``overwrite=True`` (then it is replaced). Returns the folder.
    """
    folder = Path(folder)
    # Render first: a bad card argument must not leave a half-written folder behind.
    card = render_model_card(pipeline, eval_results=eval_results, license=license, **card_kwargs)
    if folder.exists():
        if not folder.is_dir():
            raise FileExistsError(f"{folder} exists and is not a folder")
        if any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{folder} is not empty; pass overwrite=True to replace it")
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(folder, safe_serialization=safe_serialization)
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def push_to_hub(
    pipeline,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    source: str | None = None,
    eval_results: Any = None,
    create_pr: bool = False,
    **card_kwargs: Any,
) -> str:
    """Publish ``pipeline`` and its card to the Hub repo ``repo_id`` (created if missing).

    Args:
        private: create the repo as private (an existing repo keeps its visibility).
        token: Hub token (default: the logged-in one).
        revision: branch to commit to (created from main if missing; default: main).
        commit_message: the commit's message.
        source, eval_results, card_kwargs: card contents (see :func:`render_model_card`).

    Returns the URL of the repo (or of the pull request with ``create_pr=True``).
    """
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise ValueError(f"repo_id must look like 'name' or 'namespace/name', got {repo_id!r}")
    card_kwargs.setdefault("model_id", repo_id)
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="spic-hub-") as tmp:
        folder = save_for_hub(pipeline, Path(tmp) / "model", eval_results=eval_results, source=source, **card_kwargs)
        with reporting_unreachable_hub():
            repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            repo_id = getattr(repo_url, "repo_id", None) or repo_id
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="model",
                revision=revision,
                commit_message=commit_message or "Upload SPIC pipeline",
                create_pr=create_pr or None,
            )
    pr_url = getattr(commit, "pr_url", None)
    return str(pr_url or repo_url)


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    ignore_patterns: list[str] | None = None,
    repo_type: str = "model",
    space_sdk: str | None = None,
) -> str:
    """Upload a finished folder to the Hub repo ``repo_id``: a model (e.g. a segmenter with its card) or, with
    ``repo_type="space"`` and a ``space_sdk``, a Space (the page of `spic serve`)."""
    from huggingface_hub import HfApi

    if not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise ValueError(f"repo_id must look like 'name' or 'namespace/name', got {repo_id!r}")
    if repo_type not in ("model", "space") or (repo_type == "space") != (space_sdk is not None):
        raise ValueError(f"repo_type must be 'model', or 'space' with a space_sdk; got {repo_type!r}, {space_sdk!r}")
    api = HfApi(token=token)
    with reporting_unreachable_hub(folder):
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, space_sdk=space_sdk)
        api.upload_folder(repo_id=getattr(repo_url, "repo_id", None) or repo_id, folder_path=str(folder),
                          repo_type=repo_type, commit_message=commit_message or "Upload model",
                          ignore_patterns=ignore_patterns)
    return str(repo_url)
