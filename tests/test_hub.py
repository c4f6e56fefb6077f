"""Model card, the folder that would be uploaded, and publishing with `huggingface_hub` patched at its boundary."""

import importlib.util
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FIXTURES, TINY_UNET
from diffusers import DDIMScheduler
from huggingface_hub import HfApi

from spic_diffusers import SPICPipeline, SPICUNet2DModel
from spic_diffusers.hub import ModelCardError, model_card_template, push_to_hub, render_model_card, save_for_hub
from spic_diffusers.pipelines.pipeline_spic import default_scheduler

REPO_ROOT = Path(__file__).resolve().parents[1]
EVAL = {
    "dataset": {"name": "synthetic street scenes", "type": "synthetic", "split": "test"},
    "metrics": {"psnr": 21.37, "psnr_coarse": 19.02, "bpp": 0.4199, "miou": 0.612},
    "settings": {"steps": 100, "guidance": 1.5},
}


@pytest.fixture()
def pipe():
    torch.manual_seed(0)
    return SPICPipeline(unet=SPICUNet2DModel(**TINY_UNET).eval(), scheduler=default_scheduler())


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def assert_no_placeholders(text: str) -> None:
    for marker in ("{{", "}}", "{%", "%}", "None", "TODO"):
        assert marker not in text, f"leftover {marker!r} in the card"


def test_card_metadata_and_body_hold_real_values(pipe):
    text = render_model_card(
        pipe,
        model_id="someone/spic-tiny",
        eval_results=EVAL,
        training={"steps": 1234, "dataset": "1500 synthetic scenes"},
        datasets=["someone/synthetic-streets"],
        codec={"coarse_quality": 38},
    )
    assert_no_placeholders(text)
    meta, body = split_card(text)
    assert meta["library_name"] == "diffusers"
    assert meta["pipeline_tag"] == "image-to-image"
    assert {"spic", "semantic-communication", "image-compression", "diffusion"} <= set(meta["tags"])
    assert meta["datasets"] == ["someone/synthetic-streets"]
    assert meta["license"] == "apache-2.0"
    assert meta["metrics"] == ["psnr", "bpp", "mean_iou"]  # the coarse baseline is no model metric
    (entry,) = meta["model-index"]
    assert entry["name"] == "spic-tiny"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-to-image"
    # the setting names the evaluation, so results of one model under two settings stay apart
    assert result["dataset"] == {"name": "synthetic street scenes", "type": "synthetic", "split": "test",
                                 "config": "steps=100, guidance=1.5"}
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"psnr": 21.37, "bpp": 0.4199, "mean_iou": 0.612}

    n_params = sum(p.numel() for p in pipe.unet.parameters())
    assert f"{n_params / 1e6:.2f} M parameters" in body
    assert "32x64" in body and "32, 64" in body
    assert 'SPICPipeline.from_pretrained("someone/spic-tiny")' in body
    assert 'coarse_codec="hevc", coarse_quality=38' in body
    assert "| steps | 1234 |" in body
    assert "| synthetic street scenes | test | steps=100, guidance=1.5 | 21.37 | 19.02 | 0.4199 | 0.6120 |" in body
    assert "DDPMScheduler" in body and "learned_range" in body
    assert "Pezone, Francesco and Musa, Osman and Caire, Giuseppe and Barbarossa, Sergio" in body
    assert "ICASSP" in body


def _decode_example(body: str) -> str:
    return next(line for line in body.splitlines() if line.startswith("image = decode(")) + "\n" + \
        body.split("image = decode(", 1)[1].split("```", 1)[0]


def test_card_example_decodes_with_the_pipelines_own_sampler(pipe):
    _, body = split_card(render_model_card(pipe, model_id="someone/spic-tiny"))
    assert "guidance_scale=1.5, num_inference_steps=100, max_timestep=200" in _decode_example(body)
    assert "the paper's sampler" in body
    # A distilled student: its saved schedule must not be overridden by the paper's arguments in the example.
    student = SPICPipeline(unet=pipe.unet, scheduler=DDIMScheduler.from_config(pipe.scheduler.config),
                           default_timesteps=[192, 91], default_guidance_scale=1.0)
    text = render_model_card(student, model_id="someone/spic-fast")
    assert_no_placeholders(text)
    _, body = split_card(text)
    example = _decode_example(body)
    assert "guidance_scale" not in example and "num_inference_steps" not in example
    assert "2 step(s) at t = [192, 91], one pass each" in body


def test_card_without_results_has_no_model_index(pipe):
    text = render_model_card(pipe, model_id="a/b", source="converted from the original SPIC checkpoint")
    assert_no_placeholders(text)
    meta, body = split_card(text)
    assert "model-index" not in meta and "metrics" not in meta and "datasets" not in meta
    assert "No evaluation results were given" in body
    assert "converted from the original SPIC checkpoint" in body


@pytest.mark.parametrize(
    "bad",
    [
        {"psnr": float("nan")}, {"psnr": "21"}, [1, 2], "psnr=21", {"metrics": {}},
        {"metrics": {"psnr": 1}, "dataset": 3},
    ],
)
def test_bad_eval_results_are_refused(pipe, bad):
    with pytest.raises(ModelCardError):
        render_model_card(pipe, eval_results=bad)


def test_unknown_codec_setting_is_refused(pipe):
    with pytest.raises(ModelCardError, match="unknown codec settings"):
        render_model_card(pipe, codec={"qp": 35})


def test_packaged_template_is_the_repository_card():
    root_card = REPO_ROOT / "model_card.md"
    if not root_card.exists():
        pytest.skip("not a source checkout")
    assert model_card_template() == root_card.read_text(encoding="utf-8")


def test_save_for_hub_writes_a_loadable_folder(pipe, tmp_path):
    folder = save_for_hub(pipe, tmp_path / "upload", eval_results={"psnr": 20.5}, model_id="x/y")
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert names == [
        "README.md",
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    loaded = SPICPipeline.from_pretrained(folder)
    assert type(loaded.scheduler).__name__ == "DDPMScheduler"
    assert loaded.scheduler.config.variance_type == "learned_range"
    for (name, a), b in zip(pipe.unet.state_dict().items(), loaded.unet.state_dict().values()):
        assert torch.equal(a, b), name
    meta, _ = split_card((folder / "README.md").read_text())
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 20.5

    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_for_hub(pipe, folder)
    save_for_hub(pipe, folder, overwrite=True)
    assert "No evaluation results" in (folder / "README.md").read_text()


class RecordingHub:
    """Stands in for the Hub at the `HfApi` methods: records calls and what each upload would send."""

    def __init__(self, monkeypatch, keep: Path):
        self.calls, self.keep = [], keep
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", repo_id, {"token": api.token, **kwargs}))
            return f"https://huggingface.co/{repo_id}"

        def create_branch(api, repo_id, **kwargs):
            hub.calls.append(("create_branch", repo_id, kwargs))

        def upload_folder(api, **kwargs):
            folder = Path(kwargs["folder_path"])
            kwargs["files"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
            shutil.copytree(folder, hub.keep)  # the temporary folder is gone after the push
            hub.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
            return None

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)

    def call(self, name):
        found = [c for c in self.calls if c[0] == name]
        assert len(found) == 1, self.calls
        return found[0]


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(pipe, tmp_path, monkeypatch):
    hub = RecordingHub(monkeypatch, tmp_path / "sent")
    url = push_to_hub(
        pipe, "someone/spic-tiny", private=True, token="hf_test", revision="dev",
        commit_message="Add weights", eval_results={"psnr": 22.0}, source="trained for a test",
    )  # fmt: skip
    assert url == "https://huggingface.co/someone/spic-tiny"
    assert [c[0] for c in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    _, repo, create = hub.call("create_repo")
    assert repo == "someone/spic-tiny"
    assert create["private"] is True and create["exist_ok"] is True and create["token"] == "hf_test"
    _, repo, branch = hub.call("create_branch")
    assert repo == "someone/spic-tiny" and branch["branch"] == "dev" and branch["exist_ok"] is True
    _, repo, upload = hub.call("upload_folder")
    assert repo == "someone/spic-tiny"
    assert upload["revision"] == "dev" and upload["commit_message"] == "Add weights"
    assert upload["repo_type"] == "model"
    assert "README.md" in upload["files"] and "unet/diffusion_pytorch_model.safetensors" in upload["files"]
    card = (tmp_path / "sent" / "README.md").read_text()
    assert 'from_pretrained("someone/spic-tiny")' in card and "trained for a test" in card
    assert math.isclose(split_card(card)[0]["model-index"][0]["results"][0]["metrics"][0]["value"], 22.0)
    loaded = SPICPipeline.from_pretrained(tmp_path / "sent")
    assert torch.equal(loaded.unet.conv_in.weight, pipe.unet.conv_in.weight)


def test_push_to_main_creates_no_branch(pipe, tmp_path, monkeypatch):
    hub = RecordingHub(monkeypatch, tmp_path / "sent")
    push_to_hub(pipe, "spic-tiny")
    assert [c[0] for c in hub.calls] == ["create_repo", "upload_folder"]
    _, _, create = hub.call("create_repo")
    assert create["private"] is False and create["token"] is None
    _, _, upload = hub.call("upload_folder")
    assert upload["revision"] is None and upload["commit_message"]


@pytest.mark.parametrize("repo_id", ["", "a/b/c", "/"])
def test_push_to_hub_refuses_bad_repo_ids(pipe, tmp_path, monkeypatch, repo_id):
    hub = RecordingHub(monkeypatch, tmp_path / "sent")
    with pytest.raises(ValueError, match="repo_id"):
        push_to_hub(pipe, repo_id)
    assert hub.calls == []


def load_converter():
    path = REPO_ROOT / "scripts" / "convert_spic_original_to_diffusers.py"
    spec = importlib.util.spec_from_file_location("convert_spic_original_to_diffusers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_push_to_hub_publishes_the_converted_pipeline(tmp_path, monkeypatch):
    if not (FIXTURES / "model.pt").exists():
        pytest.skip("reference fixtures not found")
    hub = RecordingHub(monkeypatch, tmp_path / "sent")
    converter = load_converter()
    status = converter.main([
        "--checkpoint_path", str(FIXTURES / "model.pt"), "--original_config", str(FIXTURES / "config.json"),
        "--dump_path", str(tmp_path / "converted"), "--push_to_hub", "someone/spic-converted", "--private",
        "--token", "hf_x", "--revision", "v1", "--commit_message", "Converted weights",
    ])  # fmt: skip
    assert status == 0
    _, repo, create = hub.call("create_repo")
    assert repo == "someone/spic-converted" and create["private"] is True and create["token"] == "hf_x"
    _, _, upload = hub.call("upload_folder")
    assert upload["revision"] == "v1" and upload["commit_message"] == "Converted weights"
    card = (tmp_path / "sent" / "README.md").read_text()
    assert_no_placeholders(card)
    assert "converted from the original SPIC checkpoint" in card
    assert split_card(card)[0]["license"] == "other"  # the authors' repository states no licence
    sent = SPICPipeline.from_pretrained(tmp_path / "sent")
    local = SPICPipeline.from_pretrained(tmp_path / "converted")
    for (name, a), b in zip(local.unet.state_dict().items(), sent.unet.state_dict().values()):
        assert torch.equal(a, b), name


def test_training_push_publishes_the_recipe(pipe, tmp_path, monkeypatch):
    from spic_diffusers.training import parse_args
    from spic_diffusers.training.trainer import push_pipeline

    hub = RecordingHub(monkeypatch, tmp_path / "sent")
    args = parse_args(["--dataset_name_or_path", "data/cityscapes_spic", "--output_dir", str(tmp_path / "run"),
                       "--push_to_hub", "--hub_model_id", "someone/spic-trained", "--hub_private_repo"])
    push_pipeline(pipe, args)
    _, repo, create = hub.call("create_repo")
    assert repo == "someone/spic-trained" and create["private"] is True
    card = (tmp_path / "sent" / "README.md").read_text()
    assert_no_placeholders(card)
    assert "trained with training/train_spic.py" in card and "data/cityscapes_spic" in card


def test_offline_converter_push_says_in_one_line_that_the_local_output_is_complete(tmp_path, unreachable_hub, capsys):
    if not (FIXTURES / "model.pt").exists():
        pytest.skip(f"reference fixtures not found at {FIXTURES}")
    status = load_converter().main([
        "--checkpoint_path", str(FIXTURES / "model.pt"), "--original_config", str(FIXTURES / "config.json"),
        "--dump_path", str(tmp_path / "converted"), "--push_to_hub", "someone/spic-converted", "--token", "hf_x",
    ])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err and "Traceback" not in err
    assert "Hub cannot be reached" in err and f"{tmp_path / 'converted'} is complete" in err
    SPICPipeline.from_pretrained(tmp_path / "converted")  # the local output is usable


def test_offline_training_push_says_the_saved_run_is_complete(pipe, tmp_path, unreachable_hub):
    from spic_diffusers.hub import HubUnreachableError
    from spic_diffusers.training import parse_args
    from spic_diffusers.training.trainer import push_pipeline

    args = parse_args(["--dataset_name_or_path", "data/cityscapes_spic", "--output_dir", str(tmp_path / "run"),
                       "--push_to_hub", "--hub_model_id", "someone/spic-trained", "--hub_token", "hf_x"])
    with pytest.raises(HubUnreachableError, match=f"cannot be reached.*{tmp_path / 'run'} is complete"):
        push_pipeline(pipe, args)


def test_offline_push_to_hub_raises_one_short_error(pipe, unreachable_hub):
    """The Python API says it in one line too, without the HTTP stack's frames."""
    import traceback

    from spic_diffusers.hub import HubUnreachableError

    with pytest.raises(HubUnreachableError, match="cannot be reached .*nothing was uploaded") as info:
        push_to_hub(pipe, "someone/spic", token="hf_x")
    assert "\n" not in str(info.value) and info.value.__cause__ is None and info.value.__suppress_context__
    assert len(traceback.extract_tb(info.value.__traceback__)) <= 4


def test_the_licence_follows_the_training_data(pipe, tmp_path):
    from spic_diffusers.hub import default_license

    assert default_license(["camvid"]) == default_license("someone/CamVid-spic") == "cc-by-nc-4.0"
    assert default_license(["someone/synthetic-streets"]) == default_license(None) == "apache-2.0"
    save_for_hub(pipe, tmp_path / "camvid", datasets=["camvid"])
    assert split_card((tmp_path / "camvid" / "README.md").read_text())[0]["license"] == "cc-by-nc-4.0"
    save_for_hub(pipe, tmp_path / "mit", datasets=["camvid"], license="mit")  # the caller's word wins
    assert split_card((tmp_path / "mit" / "README.md").read_text())[0]["license"] == "mit"


def test_weights_resaved_from_a_shipped_folder_keep_its_licence(tmp_path):
    from spic_diffusers.demo import shipped_model_path

    for name, expected in ((None, "cc-by-nc-4.0"), ("synthetic", "apache-2.0")):
        shipped = SPICPipeline.from_pretrained(shipped_model_path(*([name] if name else [])))
        folder = save_for_hub(shipped, tmp_path / (name or "camvid"), model_id="someone/spic")
        assert split_card((folder / "README.md").read_text())[0]["license"] == expected


SHIPPED_CARDS = [card for card in sorted((REPO_ROOT / "src/spic_diffusers/assets").glob("*/README.md"))
                 if card.read_text(encoding="utf-8").startswith("---\n")]  # model cards (the frames have none)


@pytest.mark.parametrize("card", SHIPPED_CARDS, ids=lambda p: p.parent.name)
def test_shipped_cards_declare_the_licence_their_text_states(card):
    meta, body = split_card(card.read_text(encoding="utf-8"))
    restricted = "CC BY-NC 4.0" in body and "trained on it inherit" in body
    assert meta["license"] == ("cc-by-nc-4.0" if restricted else "apache-2.0"), card
