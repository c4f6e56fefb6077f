"""Model files are inputs too: configs, weights and original checkpoints are checked before anything is built."""

import json
import shutil
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from spic_diffusers import SPICPipeline, SPICUNet2DModel
from spic_diffusers.conversion import ConversionError, unet_from_original_checkpoint
from spic_diffusers.demo import shipped_model_path

from test_conversion import original_state_dict


@pytest.fixture()
def shipped_copy(tmp_path):
    path = tmp_path / "pipeline"
    shutil.copytree(shipped_model_path(), path)
    return path


@pytest.mark.parametrize(
    "change,message",
    [
        ({"block_out_channels": [32768, 32768]}, "block_out_channels"),
        ({"block_out_channels": [8192, 8192, 8192]}, "G parameters"),
        ({"norm_num_groups": 0}, "norm_num_groups"),
        ({"attention_head_dim": 0}, "attention_head_dim"),
        ({"attention_head_dim": None, "num_attention_heads": 0}, "num_attention_heads"),
        ({"layers_per_block": "2"}, "integer"),
        ({"layers_per_block": 10**9}, "layers_per_block"),
        ({"dropout": 2.0}, "dropout"),
        ({"in_channels": -3}, "in_channels"),
    ],
)
def test_hostile_unet_configs_are_refused_before_building(shipped_copy, change, message):
    config_path = shipped_copy / "unet" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(change)
    config_path.write_text(json.dumps(config))
    start = time.monotonic()
    with pytest.raises(ValueError, match=message):
        SPICUNet2DModel.from_pretrained(shipped_copy / "unet")
    with pytest.raises(ValueError, match=message):
        SPICPipeline.from_pretrained(shipped_copy)
    assert time.monotonic() - start < 10


def test_config_validation_does_not_depend_on_the_machine(monkeypatch):
    """A config is valid or not whatever else runs: no probe of the free memory (the pipeline budgets sizes)."""
    import psutil

    from spic_diffusers.models.unet_spic import validate_unet_config

    class _Full:
        available = total = 1

    monkeypatch.setattr(psutil, "virtual_memory", lambda: _Full())
    with torch.device("meta"):
        paper = SPICUNet2DModel()  # the paper's model, about 0.7 G parameters, "built" with 1 byte free
    validate_unet_config(dict(paper.config))


def test_missing_weights_are_an_error(shipped_copy):
    weights = shipped_copy / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    save_file({key: state[key] for key in sorted(state)[::2]}, weights)
    with pytest.raises(ValueError, match="lacks .* weights"):
        SPICUNet2DModel.from_pretrained(shipped_copy / "unet")
    with pytest.raises(ValueError, match="lacks .* weights"):
        SPICPipeline.from_pretrained(shipped_copy)


def test_complete_weights_still_load(shipped_copy):
    unet = SPICUNet2DModel.from_pretrained(shipped_copy / "unet")
    assert not any(p.is_meta for p in unet.parameters())
    unet, info = SPICUNet2DModel.from_pretrained(shipped_copy / "unet", output_loading_info=True)
    assert info["missing_keys"] == [] or not info["missing_keys"]


def test_converter_refuses_zero_stride_tensors_before_allocating():
    state = original_state_dict()
    key = "time_embed.0.weight"
    state[key] = torch.zeros(1).expand(1 << 20, 1 << 15)  # 4 bytes of storage claiming 128 GiB
    with pytest.raises(ConversionError, match="stride"):
        unet_from_original_checkpoint(state)


def test_converter_checks_shapes_on_a_skeleton_before_allocating():
    """A checkpoint whose few tensors imply a huge model is refused before that model is allocated."""
    state = original_state_dict()
    state["time_embed.0.weight"] = torch.zeros(128, 4096)  # model_channels 4096: gigabytes of weights
    start = time.monotonic()
    with pytest.raises((ConversionError, ValueError)):
        unet_from_original_checkpoint(state)
    assert time.monotonic() - start < 10


def test_converter_refuses_nan_weights():
    state = original_state_dict()
    state["out.2.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ConversionError, match="NaN"):
        unet_from_original_checkpoint(state)
    state = original_state_dict()
    assert isinstance(unet_from_original_checkpoint(state), SPICUNet2DModel)


def test_pndm_is_refused_with_its_reason():
    from diffusers import PNDMScheduler

    pipe = SPICPipeline.from_pretrained(shipped_model_path())
    pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(ValueError, match="PNDMScheduler"):
        pipe(np.zeros((64, 128), np.uint8), np.zeros((16, 32, 3), np.uint8), num_inference_steps=10)


def test_scheduler_needing_a_missing_package_is_one_clear_error():
    pytest.importorskip("diffusers")
    try:
        import torchsde  # noqa: F401

        pytest.skip("torchsde is installed here")
    except ImportError:
        pass
    from spic_diffusers.pipelines.pipeline_spic import default_scheduler
    from spic_diffusers.pipelines.schedulers import scheduler_from_name

    with pytest.raises(ValueError, match="torchsde"):
        scheduler_from_name("DPMSolverSDEScheduler", default_scheduler().config)


# ------------------------------------------------------------ what a pipeline folder may say


def _edit_json(path, change):
    data = json.loads(path.read_text())
    data = change(data) if callable(change) else {**data, **change}
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change,message",
    [
        ({"num_train_timesteps": 1e9}, "num_train_timesteps"),
        ({"num_train_timesteps": 10**9}, "num_train_timesteps"),
        ({"num_train_timesteps": -5}, "num_train_timesteps"),
        ({"num_train_timesteps": True}, "num_train_timesteps"),
        ({"beta_schedule": "cosine-ish"}, "beta_schedule"),
        ({"beta_end": float("inf")}, "beta_end"),
        ({"trained_betas": [0.01] * 10}, "trained_betas"),
        ({"trained_betas": "0.01"}, "trained_betas"),
        ({"trained_betas": [2.0] * 1000}, "trained_betas"),
        ({"steps_offset": 5000}, "steps_offset"),
        (lambda data: [data], "JSON object"),
    ],
)
def test_hostile_scheduler_configs_are_refused_before_building(shipped_copy, change, message):
    _edit_json(shipped_copy / "scheduler" / "scheduler_config.json", change)
    start = time.monotonic()
    with pytest.raises(ValueError, match=message) as info:
        SPICPipeline.from_pretrained(shipped_copy)
    assert "scheduler_config.json" in str(info.value)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda data: list(data.items()), "JSON object"),
        ({"scheduler": ["torch.nn", "Linear"]}, "diffusers scheduler"),
        ({"scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}, "scale_model_input"),
        ({"scheduler": ["diffusers", "NoSuchScheduler"]}, "no scheduler class"),
        ({"scheduler": "DDPMScheduler"}, "library, class name"),
        ({"unet": ["torch.nn", "Linear"]}, "unet must be"),
        ({"vae": ["diffusers", "AutoencoderKL"]}, "unexpected components"),
        ({"default_timesteps": 7}, "default_timesteps"),
        ({"default_timesteps": [10**9]}, "default_timesteps"),
        ({"default_timesteps": ["a"]}, "default_timesteps"),
        ({"default_guidance_scale": "1.5"}, "default_guidance_scale"),
        ({"default_guidance_scale": float("nan")}, "default_guidance_scale"),
        ({"default_start_noise": "lots"}, "default_start_noise"),
    ],
)
def test_hostile_model_index_fields_are_refused_before_building(shipped_copy, change, message):
    _edit_json(shipped_copy / "model_index.json", change)
    with pytest.raises(ValueError, match=message) as info:
        SPICPipeline.from_pretrained(shipped_copy)
    assert "model_index.json" in str(info.value)


@pytest.mark.parametrize(
    "index_change",
    [{"scheduler": ["torch.nn", "Linear"]}, {"default_timesteps": "50"}, {"default_guidance_scale": [1]}],
)
def test_hostile_model_folders_are_one_line_in_the_cli(shipped_copy, tmp_path, capsys, index_change):
    from spic_diffusers.cli import main
    from spic_diffusers.codec import encode

    _edit_json(shipped_copy / "model_index.json", index_change)
    stream = tmp_path / "x.spic"
    labels = np.zeros((32, 64), np.uint8)
    stream.write_bytes(encode(np.zeros((32, 64, 3), np.uint8), labels, coarse_codec="jpeg"))
    status = main(["decode", str(stream), "--model", str(shipped_copy), "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out.png").exists()


def test_shipped_pipelines_pass_the_folder_checks():
    from spic_diffusers.pipelines.folder_checks import check_pipeline_folder

    for name in ("default", "fast"):
        check_pipeline_folder(shipped_model_path(name))


# ---------------------------------------------------------------- what a segmenter folder may say


@pytest.fixture()
def segmenter_copy(tmp_path):
    from spic_diffusers.demo import shipped_segmenter_path

    path = tmp_path / "segmenter"
    shutil.copytree(shipped_segmenter_path(), path)
    return path


@pytest.mark.parametrize(
    "file,change,message",
    [
        ("config.json", {"num_labels": 1e8}, "num_labels"),
        ("config.json", {"num_labels": 10**8, "id2label": None, "label2id": None}, "num_labels"),
        ("config.json", {"id2label": {str(i): f"c{i}" for i in range(5000)}}, "id2label"),
        ("config.json", {"model_type": "bert"}, "not a semantic-segmentation model"),
        ("config.json", lambda data: [data], "JSON object"),
        ("preprocessor_config.json", {"size": {"height": 6000, "width": 8000}}, "size.height"),
        ("preprocessor_config.json", {"size": {"height": 4096, "width": 4096}}, "budget"),
        ("preprocessor_config.json", {"size": {"height": "192", "width": 256}}, "size.height"),
    ],
)
def test_hostile_segmenter_configs_are_refused_before_building(segmenter_copy, file, change, message):
    from spic_diffusers.codec import Segmenter

    _edit_json(segmenter_copy / file, change)
    start = time.monotonic()
    with pytest.raises(ValueError, match=message):
        Segmenter.from_pretrained(segmenter_copy)
    assert time.monotonic() - start < 20


def _edit_weights(folder, change):
    weights = folder / "model.safetensors"
    state = load_file(weights)
    save_file(change(state), weights, metadata={"format": "pt"})


def test_a_segmenter_missing_its_classifier_is_refused(segmenter_copy):
    """transformers initialises a missing head at random and only warns: the map would be garbage."""
    from spic_diffusers.codec import Segmenter

    _edit_weights(segmenter_copy, lambda state: {k: v for k, v in state.items() if "classifier" not in k})
    with pytest.raises(ValueError, match="missing keys.*random weights"):
        Segmenter.from_pretrained(segmenter_copy)


def test_a_segmenter_with_unexpected_or_misshapen_weights_is_refused(segmenter_copy):
    from spic_diffusers.codec import Segmenter

    _edit_weights(segmenter_copy, lambda state: {**state, "extra.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match="unexpected keys"):
        Segmenter.from_pretrained(segmenter_copy)
    key = next(k for k in load_file(segmenter_copy / "model.safetensors") if k.endswith("classifier.weight"))
    _edit_weights(segmenter_copy, lambda state: {**{k: v for k, v in state.items() if k != "extra.weight"},
                                                 key: torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="cannot load|mismatched"):
        Segmenter.from_pretrained(segmenter_copy)


def test_a_segmenter_with_nan_weights_is_refused(segmenter_copy):
    from spic_diffusers.codec import Segmenter

    def poison(state):
        key = next(k for k in sorted(state) if state[k].is_floating_point())
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float("nan")
        return state

    _edit_weights(segmenter_copy, poison)
    with pytest.raises(ValueError, match="NaN"):
        Segmenter.from_pretrained(segmenter_copy)


def test_a_broken_segmenter_is_one_line_in_the_cli_and_nothing_is_written(segmenter_copy, tmp_path, capsys):
    from PIL import Image

    from spic_diffusers.cli import main

    _edit_weights(segmenter_copy, lambda state: {k: v for k, v in state.items() if "classifier" not in k})
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    status = main(["encode", str(tmp_path / "photo.png"), "--segmenter", str(segmenter_copy),
                   "-o", str(tmp_path / "x.spic")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and "missing keys" in err[-1] and not any("Traceback" in line for line in err), err
    assert not (tmp_path / "x.spic").exists()


def test_other_segmentation_architectures_are_accepted(tmp_path):
    """UperNet on a ResNet with an aspect-keeping DPT processor (the segmenter the project trains)."""
    from transformers import DPTImageProcessor, ResNetConfig, UperNetConfig, UperNetForSemanticSegmentation

    from spic_diffusers.codec import Segmenter
    from spic_diffusers.labels import ID2LABEL

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                            out_features=["stage1", "stage2", "stage3", "stage4"])
    config = UperNetConfig(backbone_config=backbone, hidden_size=16, auxiliary_in_channels=16,
                           auxiliary_channels=8, id2label={i: ID2LABEL[i] for i in range(11)},
                           label2id={ID2LABEL[i]: i for i in range(11)})
    UperNetForSemanticSegmentation(config).save_pretrained(tmp_path / "upernet")
    DPTImageProcessor(size={"height": 64, "width": 96}, keep_aspect_ratio=True).save_pretrained(tmp_path / "upernet")
    segmenter = Segmenter.from_pretrained(tmp_path / "upernet")
    assert segmenter(np.full((48, 64, 3), 90, np.uint8)).shape == (48, 64)


def test_unet_weights_of_the_wrong_shape_are_one_clear_error(shipped_copy):
    weights = shipped_copy / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    key = sorted(k for k in state if k.endswith(".weight") and state[k].ndim == 4)[0]
    state[key] = torch.zeros(3, 3, 3, 3)
    save_file(state, weights)
    with pytest.raises(ValueError) as info:
        SPICPipeline.from_pretrained(shipped_copy)
    assert "Traceback" not in str(info.value)
