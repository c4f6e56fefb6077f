"""diffusers' own loader builds SPIC folders and Hub repos: `DiffusionPipeline.from_pretrained` returns a
`SPICPipeline` for every shipped receiver, a `save_pretrained` folder and a Hub id (offline, from the cache), with no
code from the folder; and no shipped config names the machine it was built on."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import pytest
import torch
from conftest import TINY_UNET
from diffusers import DiffusionPipeline
from diffusers.pipelines import pipeline_loading_utils, pipeline_utils

from spic_diffusers import SPICPipeline, SPICUNet2DModel
from spic_diffusers.pipelines.pipeline_spic import default_scheduler

ASSETS = Path(__file__).resolve().parents[1] / "src" / "spic_diffusers" / "assets"
SHIPPED_PIPELINES = sorted(p.name for p in ASSETS.iterdir() if (p / "model_index.json").is_file())
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _inputs(height=32, width=48):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 19, (1, height, width), generator=g)
    return labels, torch.rand(1, 3, height // 4, width // 4, generator=g) * 2 - 1


def _decode(pipe, **kwargs):
    labels, low = _inputs()
    return pipe(labels, low, output_type="pt", generator=torch.Generator().manual_seed(0), **kwargs).images


def test_every_shipped_receiver_is_found():
    assert {"spic-camvid", "spic-camvid-fast"} <= set(SHIPPED_PIPELINES)


@pytest.mark.parametrize("name", SHIPPED_PIPELINES)
def test_diffusion_pipeline_loads_every_shipped_receiver_and_it_decodes(name):
    pipe = DiffusionPipeline.from_pretrained(ASSETS / name)
    assert type(pipe) is SPICPipeline and type(pipe.unet) is SPICUNet2DModel
    ours = SPICPipeline.from_pretrained(ASSETS / name)
    settings = [{k: v for k, v in p.config.items() if k != "_name_or_path"} for p in (pipe, ours)]
    assert settings[0] == settings[1] and "default_timesteps" in settings[0]  # the saved sampler defaults come along
    assert type(pipe.scheduler) is type(ours.scheduler)
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), ours.unet.state_dict().values()))
    pipe.set_progress_bar_config(disable=True)
    # The fast student runs its saved few-step schedule; the receiver's paper sampler one short step.
    kwargs = {} if pipe.config.default_timesteps else {"timesteps": [50]}
    image = _decode(pipe, unet_dtype="fp32", **kwargs)
    assert image.shape == (1, 3, 32, 48) and torch.isfinite(image).all()
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.01


def test_a_save_pretrained_folder_round_trips_through_diffusion_pipeline(tmp_path):
    torch.manual_seed(0)
    pipe = SPICPipeline(SPICUNet2DModel(**TINY_UNET).eval(), default_scheduler(), default_timesteps=[150, 60],
                        default_guidance_scale=1.0, default_start_noise="forward")
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "saved")
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "saved")
    assert type(loaded) is SPICPipeline
    assert loaded.config.default_timesteps == [150, 60] and loaded.config.default_start_noise == "forward"
    loaded.set_progress_bar_config(disable=True)
    assert torch.allclose(_decode(pipe), _decode(loaded), atol=1e-6)


def test_a_loaded_pipeline_saves_no_load_path(tmp_path):
    """diffusers records the folder a pipeline and its UNet came from (`_name_or_path`); saving them again must
    not write that machine's path into the new folder."""
    torch.manual_seed(0)
    SPICPipeline(SPICUNet2DModel(**TINY_UNET).eval(), default_scheduler()).save_pretrained(tmp_path / "a")
    loaded = SPICPipeline.from_pretrained(tmp_path / "a")
    assert loaded.name_or_path and loaded.unet.config._name_or_path  # recorded in memory ...
    loaded.save_pretrained(tmp_path / "b")
    for path in sorted((tmp_path / "b").rglob("*.json")):
        assert "_name_or_path" not in json.loads(path.read_text()), path  # ... and not saved
    assert type(DiffusionPipeline.from_pretrained(tmp_path / "b")) is SPICPipeline


@pytest.mark.parametrize("library", ["spic_diffusers", "spic_diffusers.models"])
def test_an_index_naming_the_unet_by_its_package_says_how_to_resave(tmp_path, library):
    """diffusers resolves only the defining module; such an index fails before anything is built, saying why."""
    torch.manual_seed(0)
    SPICPipeline(SPICUNet2DModel(**TINY_UNET).eval(), default_scheduler()).save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    (tmp_path / "model_index.json").write_text(json.dumps({**index, "unet": [library, "SPICUNet2DModel"]}))
    with pytest.raises(ValueError, match="save the pipeline again"):
        SPICPipeline.from_pretrained(tmp_path)


def _hub_cache(pipe, cache: Path, repo_id: str) -> list[str]:
    """The layout `huggingface_hub` leaves after downloading `repo_id`; returns the repo's file names."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    pipe.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())


def test_a_hub_id_goes_through_diffusers_own_download(tmp_path, monkeypatch):
    """Offline, from the Hub cache, with the repo's file list answered as the Hub would: diffusers' download checks
    every component the index names and accepts SPIC's (it refuses modules it cannot resolve to an installed one)."""
    torch.manual_seed(0)
    pipe = SPICPipeline(SPICUNet2DModel(**TINY_UNET).eval(), default_scheduler())
    files = _hub_cache(pipe, tmp_path, "spic-test/tiny-spic")
    listing = SimpleNamespace(siblings=[SimpleNamespace(rfilename=f) for f in files])
    monkeypatch.setattr(pipeline_utils, "model_info", lambda *args, **kwargs: listing)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no request leaves the machine
    loaded = DiffusionPipeline.from_pretrained("spic-test/tiny-spic", cache_dir=str(tmp_path))
    assert type(loaded) is SPICPipeline and type(loaded.unet) is SPICUNet2DModel
    assert type(SPICPipeline.from_pretrained("spic-test/tiny-spic", cache_dir=str(tmp_path))) is SPICPipeline
    # What the registration answers: without it diffusers' download refuses the UNet's module.
    monkeypatch.delitem(pipeline_loading_utils.LOADABLE_CLASSES, SPICUNet2DModel.__module__)
    with pytest.raises(ValueError, match="unet_spic"):
        DiffusionPipeline.from_pretrained("spic-test/tiny-spic", cache_dir=str(tmp_path))


def _holds_key(value, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(_holds_key(v, key) for v in value.values())
    return isinstance(value, list) and any(_holds_key(v, key) for v in value)


def test_no_shipped_config_names_a_build_path():
    configs = sorted(ASSETS.rglob("*.json"))
    assert len(configs) >= 10 and any(p.parent.name == "upernet-camvid" for p in configs)
    assert not [str(p) for p in configs if _holds_key(json.loads(p.read_text()), "_name_or_path")]
    assert _holds_key({"backbone_config": {"_name_or_path": ""}}, "_name_or_path")  # nested ones are found too


def test_the_packaging_script_strips_nested_build_paths(tmp_path):
    """transformers writes `_name_or_path` inside a segmenter's `backbone_config` too."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "package_shipped_models.py"
    spec = importlib.util.spec_from_file_location("package_shipped_models", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = {"_name_or_path": "/build/run", "backbone_config": {"_name_or_path": "", "depths": [2, 2]},
              "stages": [{"_name_or_path": None, "width": 3}]}
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "config.json").write_text(json.dumps(config))
    (tmp_path / "seg" / "other.json").write_text('{"a": 1}')
    module.strip_build_paths(tmp_path)
    assert json.loads((tmp_path / "seg" / "config.json").read_text()) == {
        "backbone_config": {"depths": [2, 2]}, "stages": [{"width": 3}]}
    assert (tmp_path / "seg" / "other.json").read_text() == '{"a": 1}'  # files without the key are left as they are
