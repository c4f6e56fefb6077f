"""Conversion of original SPIC checkpoints, both directions, for every configuration family."""

import pytest
import torch

from spic_diffusers import SPICUNet2DModel, convert_to_original_state_dict
from spic_diffusers.conversion import (
    ConversionError,
    load_original_checkpoint,
    original_options_to_unet_config,
    resolve_unet_config,
    unet_from_original_checkpoint,
)

from conftest import FIXTURES, load_fixture


def original_state_dict(mc=32, nrb=1, mult=(1, 2), attn_ds=(2,), scale_shift=True, updown=True, classes=19,
                        learn_sigma=True, seed=0):
    """An original-format state dict written from the original network's construction rules."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def t(*shape):
        return torch.randn(*shape, generator=g) * 0.05

    def gn(p, c):
        sd[f"{p}.weight"], sd[f"{p}.bias"] = t(c), t(c)

    def conv(p, cin, cout, k=3, dims=2):
        sd[f"{p}.weight"] = t(cout, cin, *([k] * dims))
        sd[f"{p}.bias"] = t(cout)

    def lin(p, cin, cout):
        sd[f"{p}.weight"], sd[f"{p}.bias"] = t(cout, cin), t(cout)

    temb = 4 * mc

    def resblock(p, cin, cout):
        gn(f"{p}.in_layers.0", cin)
        conv(f"{p}.in_layers.2", cin, cout)
        lin(f"{p}.emb_layers.1", temb, 2 * cout if scale_shift else cout)
        gn(f"{p}.out_layers.0", cout)
        conv(f"{p}.out_layers.3", cout, cout)
        if cin != cout:
            conv(f"{p}.skip_connection", cin, cout, k=1)

    def spade(p, c):
        conv(f"{p}.mlp_shared.0", classes, 128)
        conv(f"{p}.mlp_gamma", 128, c)
        conv(f"{p}.mlp_beta", 128, c)

    def spade_resblock(p, cin, cout):
        spade(f"{p}.in_norm", cin)
        conv(f"{p}.in_layers.1", cin, cout)
        lin(f"{p}.emb_layers.1", temb, 2 * cout if scale_shift else cout)
        spade(f"{p}.out_norm", cout)
        conv(f"{p}.out_layers.2", cout, cout)
        if cin != cout:
            conv(f"{p}.skip_connection", cin, cout, k=1)

    def attention(p, c):
        gn(f"{p}.norm", c)
        conv(f"{p}.qkv", c, 3 * c, k=1, dims=1)
        conv(f"{p}.proj_out", c, c, k=1, dims=1)

    lin("time_embed.0", mc, temb)
    lin("time_embed.2", temb, temb)
    ch = mult[0] * mc
    conv("input_blocks.0.0", 6, ch)
    chans, n, ds = [ch], 1, 1
    for level, m in enumerate(mult):
        for _ in range(nrb):
            resblock(f"input_blocks.{n}.0", ch, m * mc)
            ch = m * mc
            if ds in attn_ds:
                attention(f"input_blocks.{n}.1", ch)
            chans.append(ch)
            n += 1
        if level != len(mult) - 1:
            if updown:
                resblock(f"input_blocks.{n}.0", ch, ch)
            else:
                conv(f"input_blocks.{n}.0.op", ch, ch)
            chans.append(ch)
            n += 1
            ds *= 2
    spade_resblock("middle_block.0", ch, ch)
    attention("middle_block.1", ch)
    spade_resblock("middle_block.2", ch, ch)
    n = 0
    for level, m in list(enumerate(mult))[::-1]:
        for i in range(nrb + 1):
            spade_resblock(f"output_blocks.{n}.0", ch + chans.pop(), m * mc)
            ch = m * mc
            sub = 1
            if ds in attn_ds:
                attention(f"output_blocks.{n}.1", ch)
                sub = 2
            if level and i == nrb:
                if updown:
                    spade_resblock(f"output_blocks.{n}.{sub}", ch, ch)
                else:
                    conv(f"output_blocks.{n}.{sub}.conv", ch, ch)
                ds //= 2
            n += 1
    gn("out.0", ch)
    conv("out.2", ch, 6 if learn_sigma else 3)
    return sd


FAMILIES = {
    "fixture-like": (dict(), dict(num_head_channels=16, channel_mult="1,2", attention_resolutions="16", image_size=32)),
    "additive-time-embedding": (dict(scale_shift=False), dict(num_head_channels=16, image_size=32)),
    "conv-resampling": (dict(updown=False), dict(num_head_channels=16, image_size=32, resblock_updown=False)),
    "head-count": (dict(nrb=2), dict(num_head_channels=-1, num_heads=4, num_heads_upsample=2, image_size=32)),
    "instance-edge-channel": (dict(classes=20), dict(num_head_channels=16, image_size=32, no_instance=False)),
    "three-levels": (dict(mult=(1, 1, 2), attn_ds=(1, 4)), dict(num_head_channels=8, image_size=32,
                                                                 attention_resolutions="32,8")),
    "no-learned-sigma": (dict(learn_sigma=False), dict(num_head_channels=16, image_size=32)),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_round_trip(family):
    build, options = FAMILIES[family]
    sd = original_state_dict(**build)
    model = unet_from_original_checkpoint(sd, options)
    back = convert_to_original_state_dict(model.state_dict(), model.config)
    assert set(back) == set(sd)
    for key in sd:
        assert torch.equal(back[key], sd[key]), key
    with torch.no_grad():
        h, w = 32, 64
        seg = torch.rand(1, model.config.num_semantic_channels, h, w)
        out = model(torch.randn(1, 3, h, w), 10, seg, torch.rand(1, 3, 8, 16) * 2 - 1).sample
    assert out.shape == (1, 6 if build.get("learn_sigma", True) else 3, h, w)


def test_shapes_are_inferred_from_the_checkpoint():
    sd = original_state_dict(nrb=2, mult=(1, 1, 2), attn_ds=(4,), scale_shift=False, classes=20)
    config = resolve_unet_config(sd, {"num_head_channels": 16})
    assert config["layers_per_block"] == 2
    assert tuple(config["block_out_channels"]) == (32, 32, 64)
    assert tuple(config["attention_downsample_factors"]) == (4,)
    assert config["resnet_time_scale_shift"] == "default"
    assert config["num_semantic_channels"] == 20 and config["instance_edge_channel"] is True


def test_fixture_checkpoint_converts_and_reverses():
    config = load_fixture("config.json")  # skips when the fixtures are absent
    state = load_original_checkpoint(FIXTURES / "model.pt")
    model = unet_from_original_checkpoint(state, config)
    back = convert_to_original_state_dict(model.state_dict(), model.config)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_leftover_and_missing_keys_are_named():
    sd = original_state_dict()
    options = dict(num_head_channels=16, image_size=32)
    extra = dict(sd, **{"input_blocks.1.0.bogus.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="input_blocks.1.0.bogus.weight"):
        unet_from_original_checkpoint(extra, options)
    missing = {k: v for k, v in sd.items() if k != "middle_block.1.proj_out.bias"}
    with pytest.raises(ConversionError, match="mid_block.attentions.0.to_out.0.bias"):
        unet_from_original_checkpoint(missing, options)


def test_contradicting_options_are_refused():
    sd = original_state_dict()
    with pytest.raises(ConversionError, match="num_res_blocks"):
        unet_from_original_checkpoint(sd, dict(num_head_channels=16, num_res_blocks=2))
    with pytest.raises(ValueError, match="heads"):
        unet_from_original_checkpoint(sd, dict(num_head_channels=-1, num_heads=3))


class Payload:
    """An arbitrary pickled object: loading it would need code execution."""


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": Payload()}, path)
    with pytest.raises(ConversionError, match="weights_only"):
        load_original_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError):
        load_original_checkpoint(tmp_path / "junk.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ConversionError, match="not a state dict"):
        load_original_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError):
        load_original_checkpoint(tmp_path / "absent.pt")


def test_paper_options_give_the_paper_network():
    config = original_options_to_unet_config({})
    assert tuple(config["block_out_channels"]) == (256, 256, 512, 512, 1024, 1024)
    assert tuple(config["attention_downsample_factors"]) == (8, 16, 32)
    assert config["attention_head_dim"] == 64 and config["sample_size"] == (256, 512)
    assert config["downsample_type"] == config["upsample_type"] == "resnet"
    model = SPICUNet2DModel(**config)  # built on the meta device would be nicer; 653 M params fit in RAM
    n = sum(p.numel() for p in model.parameters())
    assert 640e6 < n < 670e6


# Every option of the original code's sampling and training parsers (image_sample.py / image_train.py, which add
# the model, diffusion and super-resolution defaults) with its default value, as `json.dump(vars(args))` writes it.
ORIGINAL_PARSER_DEFAULTS = {
    # model
    "image_size": 64, "num_classes": 151, "num_channels": 128, "num_res_blocks": 2, "num_heads": 4,
    "num_heads_upsample": -1, "num_head_channels": -1, "attention_resolutions": "16,8", "channel_mult": "",
    "dropout": 0.0, "class_cond": False, "use_checkpoint": False, "use_scale_shift_norm": True,
    "resblock_updown": False, "use_fp16": False, "use_new_attention_order": False, "no_instance": False,
    # diffusion
    "learn_sigma": False, "diffusion_steps": 1000, "noise_schedule": "linear", "timestep_respacing": "",
    "use_kl": False, "predict_xstart": False, "rescale_timesteps": False, "rescale_learned_sigmas": False,
    # super-resolution wrapper
    "large_size": 128, "small_size": 64, "compression_type": "down+bpg", "compression_level": 35,
    "max_iter_time": 1000, "image_path": "", "generated_semantic": "", "coarse_path": "",
    # image_sample.py
    "data_dir": "", "dataset_mode": "", "clip_denoised": True, "num_samples": 10000, "batch_size": 1,
    "use_ddim": False, "model_path": "", "results_path": "", "is_train": False, "s": 1.0, "input_img": None,
    # image_train.py
    "schedule_sampler": "uniform", "lr": 1e-4, "weight_decay": 0.0, "lr_anneal_steps": 0, "microbatch": -1,
    "ema_rate": "0.9999", "drop_rate": 0.0, "log_interval": 50, "save_interval": 500, "resume_checkpoint": "",
    "fp16_scale_growth": 1e-3,
}  # fmt: skip


def _convert_with_config(tmp_path, state, config):
    import importlib.util
    import json
    from pathlib import Path

    from spic_diffusers import SPICPipeline

    torch.save(state, tmp_path / "model.pt")
    (tmp_path / "args.json").write_text(json.dumps(config))
    path = Path(__file__).resolve().parents[1] / "scripts" / "convert_spic_original_to_diffusers.py"
    spec = importlib.util.spec_from_file_location("convert_spic_original_to_diffusers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main(["--checkpoint_path", str(tmp_path / "model.pt"), "--original_config",
                          str(tmp_path / "args.json"), "--dump_path", str(tmp_path / "out")])
    assert status == 0
    return SPICPipeline.from_pretrained(tmp_path / "out")


def test_a_dump_of_every_original_default_converts(tmp_path):
    """All the original parser's defaults (but a narrower network): channel_mult "" picks 1,2,3,4 at size 64."""
    config = {**ORIGINAL_PARSER_DEFAULTS, "num_channels": 32}
    state = original_state_dict(mc=32, nrb=2, mult=(1, 2, 3, 4), attn_ds=(4, 8), updown=False, classes=152,
                                learn_sigma=False)
    pipe = _convert_with_config(tmp_path, state, config)
    unet = pipe.unet.config
    assert tuple(unet.block_out_channels) == (32, 64, 96, 128) and unet.layers_per_block == 2
    assert tuple(unet.attention_downsample_factors) == (4, 8) and unet.num_semantic_channels == 152
    assert unet.instance_edge_channel and unet.out_channels == 3 and unet.downsample_type == "conv"
    assert tuple(unet.sample_size) == (64, 128)
    assert pipe.scheduler.config.variance_type == "fixed_large" and pipe.scheduler.config.num_train_timesteps == 1000
    back = convert_to_original_state_dict(pipe.unet.state_dict(), pipe.unet.config)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_the_fixture_converts_with_a_full_dump_of_its_options(tmp_path):
    import json

    fixture = load_fixture("config.json")
    config = {**ORIGINAL_PARSER_DEFAULTS, **fixture["model"], **fixture["diffusion"]}
    state = load_original_checkpoint(FIXTURES / "model.pt")
    pipe = _convert_with_config(tmp_path, state, config)
    reference = unet_from_original_checkpoint(state, fixture)
    def public(config):
        return json.loads(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))

    assert public(pipe.unet.config) == public(reference.config)
    assert pipe.scheduler.config.variance_type == "learned_range"
    assert all(torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), reference.state_dict().values()))


def test_empty_channel_mult_that_picks_other_levels_than_the_checkpoint_is_named():
    with pytest.raises(ConversionError, match=r"channel_mult='' picks 1,2,3,4 for image_size 64.*checkpoint has 1,2"):
        resolve_unet_config(original_state_dict(), {"image_size": 64, "channel_mult": "", "num_head_channels": 16})
    # Sizes without a rule in the original take the checkpoint's levels.
    config = resolve_unet_config(original_state_dict(), {"image_size": 32, "channel_mult": "", "num_head_channels": 16})
    assert tuple(config["block_out_channels"]) == (32, 64)


@pytest.mark.parametrize("options, message", [
    ({"noise_schedule": "sqrt"}, "noise_schedule='sqrt'"),
    ({"predict_xstart": True}, "predict_xstart=True"),
    ({"diffusion_steps": 4000, "rescale_timesteps": True}, "rescale_timesteps=True"),
])  # fmt: skip
def test_diffusion_options_the_pipeline_cannot_express_are_named(options, message):
    from spic_diffusers.conversion import scheduler_config_from_original_options

    with pytest.raises(ConversionError, match=message):
        scheduler_config_from_original_options(options)


def test_diffusion_options_map_to_the_scheduler():
    from spic_diffusers.conversion import scheduler_config_from_original_options

    config = scheduler_config_from_original_options({"diffusion_steps": 4000, "noise_schedule": "cosine"})
    assert config["num_train_timesteps"] == 4000 and config["beta_schedule"] == "squaredcos_cap_v2"
    assert config["beta_end"] == pytest.approx(0.005)


def test_models_the_original_code_cannot_build_are_refused_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from spic_diffusers.conversion import original_code_incompatibilities
    from spic_diffusers.demo import shipped_model_path

    for family, (build, options) in FAMILIES.items():
        assert original_code_incompatibilities(resolve_unet_config(original_state_dict(**build), options)) == [], family
    script = Path(__file__).resolve().parents[1] / "scripts" / "convert_spic_diffusers_to_original.py"
    result = subprocess.run([sys.executable, str(script), "--model", str(shipped_model_path("synthetic")),
                             "--output", str(tmp_path / "model.pt")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cannot express" in result.stderr and "spade_hidden_channels=32" in result.stderr
    assert not (tmp_path / "model.pt").exists()
    assert original_code_incompatibilities({"block_out_channels": (32, 48), "downsample_type": "conv",
                                            "upsample_type": "resnet"}) == [
        "block_out_channels (32, 48) are not integer multiples of the base width 32",
        "downsample_type/upsample_type ('conv', 'resnet') (the original pairs resnet/resnet, conv/conv or "
        "pool/nearest)",
    ]


def _recompress(source, target) -> None:
    """Copy a ``torch.save`` archive with every record deflated: a small file whose records inflate to their size."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))


def test_checkpoint_archives_are_inspected_before_torch_load(tmp_path, monkeypatch):
    """A 1.5 MB record holding a compressed 1.5 GB tensor is refused from the zip directory alone."""
    import spic_diffusers.conversion as conversion

    torch.save({"weight": torch.zeros(1 << 22)}, tmp_path / "plain.pt")  # 16 MB of zeros
    _recompress(tmp_path / "plain.pt", tmp_path / "bomb.pt")
    assert (tmp_path / "bomb.pt").stat().st_size < (1 << 20)

    def no_torch_load(*args, **kwargs):
        raise AssertionError("torch.load ran on a refused archive")

    monkeypatch.setattr(conversion.torch, "load", no_torch_load)
    with pytest.raises(ConversionError, match="is compressed"):
        load_original_checkpoint(tmp_path / "bomb.pt")
    torch.save({"weight": torch.zeros(4)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(ConversionError, match="not a zip-format"):
        load_original_checkpoint(tmp_path / "legacy.pt")
    with pytest.raises(ConversionError, match="budget"):
        conversion.check_checkpoint_archive(tmp_path / "plain.pt", max_bytes=1 << 20)
    conversion.check_checkpoint_archive(tmp_path / "plain.pt")
    conversion.check_checkpoint_archive(FIXTURES / "model.pt")


def test_convert_script_reports_a_checkpoint_bomb_in_one_line(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    torch.save({"weight": torch.zeros(1 << 20)}, tmp_path / "plain.pt")
    _recompress(tmp_path / "plain.pt", tmp_path / "bomb.pt")
    path = Path(__file__).resolve().parents[1] / "scripts" / "convert_spic_original_to_diffusers.py"
    spec = importlib.util.spec_from_file_location("convert_spic_original_to_diffusers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main(["--checkpoint_path", str(tmp_path / "bomb.pt"), "--dump_path", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "compressed" in err, err
    assert not (tmp_path / "out").exists()


def test_archive_budget_is_the_parameter_budget_in_float32():
    from spic_diffusers.conversion import MAX_CHECKPOINT_BYTES
    from spic_diffusers.models.unet_spic import MAX_PARAMETERS

    assert MAX_CHECKPOINT_BYTES == 4 * MAX_PARAMETERS
