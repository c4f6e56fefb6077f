"""SPICPipeline: fixtures of the original sampler, every scheduler, inputs, and loading."""

import json
import shutil

import huggingface_hub.constants
import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils.torch_utils import randn_tensor

from spic_diffusers import SPICPipeline, SPICUNet2DModel
from spic_diffusers.pipelines.pipeline_spic import default_scheduler

from conftest import TINY_UNET, load_fixture

SCHEDULERS = [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler,
              UniPCMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler]
PAPER_VISITS = [192, 182, 172, 161, 151, 141, 131, 121, 111, 101, 91, 81, 71, 61, 50, 40, 30, 20, 10, 0]


@pytest.fixture()
def pipe(tiny_unet):
    p = SPICPipeline(unet=tiny_unet, scheduler=default_scheduler())
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture()
def fixture_pipe(fixture_unet):
    p = SPICPipeline(unet=fixture_unet, scheduler=default_scheduler())
    p.set_progress_bar_config(disable=True)
    return p


def _inputs(batch=1, height=32, width=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 19, (batch, height, width), generator=g)
    labels[:, :2] = 255
    return labels, torch.rand(batch, 3, height // 4, width // 4, generator=g) * 2 - 1


def _record_timesteps():
    seen = []

    def callback(pipe, i, t, kwargs):
        seen.append(int(t))
        return {}

    return seen, callback


def test_paper_default_visits_twenty_steps(pipe):
    seen, callback = _record_timesteps()
    pipe(*_inputs(), output_type="pt", callback_on_step_end=callback)
    assert seen == PAPER_VISITS


def test_guidance_fixture_one_ddpm_step(fixture_pipe):
    fw, g = load_fixture("forward.pt"), load_fixture("guidance.pt")
    scheduler = fixture_pipe.scheduler
    scheduler.set_timesteps(100)
    assert torch.allclose(scheduler.alphas_cumprod[g["timestep_map"]].double(), g["alphas_cumprod"].double(), atol=1e-6)
    for key in ("first", "middle", "last"):
        rec = g[key]
        t = int(rec["timestep"])
        out = fixture_pipe.guided_model_output(rec["x_t"], t, fw["segmap"], fw["low_res"], guidance_scale=1.5)
        prev = scheduler.step(out, t, rec["x_t"], generator=torch.Generator().manual_seed(7)).prev_sample
        if t > 0:
            noise = randn_tensor(rec["x_t"].shape, generator=torch.Generator().manual_seed(7))
            std = torch.exp(0.5 * rec["log_variance"])
            prev = prev - std * noise
            # The scheduler's own learned-range log variance equals the original's.
            log_var = scheduler._get_variance(t, predicted_variance=out[:, 3:])
            assert torch.allclose(log_var, rec["log_variance"], atol=1e-5), key
        assert torch.allclose(prev, rec["mean"], atol=1e-5), (key, (prev - rec["mean"]).abs().max())


def test_ddim_fixture_whole_loop(fixture_pipe):
    fw, d = load_fixture("forward.pt"), load_fixture("ddim_sample.pt")
    config = load_fixture("config.json")
    fixture_pipe.scheduler = DDIMScheduler.from_config(fixture_pipe.scheduler.config)
    steps = []
    out = fixture_pipe(
        fw["labels"], fw["low_res"], guidance_scale=float(d["guidance_scale"]), timesteps=config["timestep_map"],
        output_type="pt", callback_on_step_end=lambda p, i, t, kw: steps.append(kw["sample"].clone()) or {},
    ).images
    expected = ((d["sample"] + 1) / 2).clamp(0, 1)
    assert torch.allclose(out, expected, atol=1e-4), (out - expected).abs().max()
    assert len(steps) == 20
    for i, x in enumerate(steps):
        assert torch.allclose(x, d["intermediates"][i], atol=1e-4), i


def test_ddim_paper_schedule_uses_exact_predecessors(pipe):
    """DDIM on the truncated linspace spacing steps 61 -> 50 (not 61 -> 51), as with the explicit list."""
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    labels, low = _inputs()
    seen, callback = _record_timesteps()
    spaced = pipe(labels, low, output_type="pt", callback_on_step_end=callback).images
    explicit = pipe(labels, low, timesteps=PAPER_VISITS, output_type="pt").images
    assert seen == PAPER_VISITS
    assert torch.equal(spaced, explicit)


@pytest.mark.parametrize("scheduler_cls", SCHEDULERS, ids=lambda c: c.__name__)
def test_every_scheduler_runs_and_is_deterministic(pipe, scheduler_cls):
    pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    labels, low = _inputs()
    for kwargs in (dict(num_inference_steps=4, max_timestep=None), dict(num_inference_steps=20),
                   dict(num_inference_steps=20, start_noise="forward")):
        a = pipe(labels, low, output_type="pt", generator=torch.Generator().manual_seed(3), **kwargs).images
        assert a.shape == (1, 3, 32, 64) and torch.isfinite(a).all()
        assert 0 <= a.min() and a.max() <= 1
    b = pipe(labels, low, output_type="pt", generator=torch.Generator().manual_seed(3), **kwargs).images
    assert torch.equal(a, b), scheduler_cls.__name__


def test_pure_noise_start_depends_on_the_seed(pipe):
    labels, low = _inputs()
    a = pipe(labels, low, max_timestep=None, num_inference_steps=5, output_type="pt",
             generator=torch.Generator().manual_seed(1)).images
    b = pipe(labels, low, max_timestep=None, num_inference_steps=5, output_type="pt",
             generator=torch.Generator().manual_seed(2)).images
    assert not torch.allclose(a, b)


def test_unusable_schedulers_fail_clearly(pipe):
    labels, low = _inputs()
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction")
    with pytest.raises(ValueError, match="epsilon"):
        pipe(labels, low)
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type="epsilon",
                                               variance_type="learned")
    with pytest.raises(ValueError, match="learned_range"):
        pipe(labels, low)


@pytest.mark.parametrize("name", ["LCMScheduler", "TCDScheduler"])
def test_lcm_and_tcd_run_with_their_own_spacing(pipe, name):
    """They pick steps from an `original_inference_steps` grid (50): the default spacing follows it, and the
    paper's spacing of 100 widens the grid instead of failing."""
    import diffusers

    pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config)
    labels, low = _inputs()
    seen, callback = _record_timesteps()
    image = pipe(labels, low, output_type="pt", callback_on_step_end=callback,
                 generator=torch.Generator().manual_seed(0)).images
    assert seen == list(range(199, 0, -20)) and torch.isfinite(image).all()
    seen.clear()
    pipe(labels, low, num_inference_steps=100, output_type="pt", callback_on_step_end=callback)
    assert seen == list(range(199, 0, -10))


def test_flow_matching_schedulers_are_refused_in_one_line(pipe):
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    labels, low = _inputs()
    with pytest.raises(ValueError, match="flow-matching .* predicts DDPM noise"):
        pipe(labels, low)


def test_guidance_is_one_batched_forward(pipe):
    batches = []
    handle = pipe.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    try:
        labels, low = _inputs(batch=2)
        seen, callback = _record_timesteps()
        pipe(labels, low, num_inference_steps=20, guidance_scale=1.5, output_type="pt", callback_on_step_end=callback,
             guidance_batching="batched")
        assert batches == [4] * len(seen)
        batches.clear()
        pipe(labels, low, num_inference_steps=20, guidance_scale=1.0, output_type="pt")
        assert batches == [2] * len(seen)
    finally:
        handle.remove()


def test_batched_guidance_equals_two_passes(pipe):
    labels, low = _inputs(batch=2)
    seg = pipe.prepare_segmentation_map(labels)
    x = torch.randn(2, 3, 32, 64)
    guided = pipe.guided_model_output(x, 150, seg, low, guidance_scale=2.0)
    assert guided.shape == (2, 6, 32, 64)
    with torch.no_grad():
        cond = pipe.unet(x, 150, seg, low).sample
        uncond = pipe.unet(x, 150, torch.zeros_like(seg), low).sample
    assert torch.allclose(guided[:, :3], uncond[:, :3] + 2.0 * (cond[:, :3] - uncond[:, :3]), atol=1e-5)
    assert torch.allclose(guided[:, 3:], cond[:, 3:], atol=1e-5)


def test_output_types(pipe):
    labels, low = _inputs()
    kw = dict(num_inference_steps=20)
    pil = pipe(labels, low, **kw).images
    assert isinstance(pil[0], PIL.Image.Image) and pil[0].size == (64, 32)
    np_out = pipe(labels, low, output_type="np", generator=torch.Generator().manual_seed(0), **kw).images
    assert np_out.shape == (1, 32, 64, 3) and 0 <= np_out.min() and np_out.max() <= 1
    pt = pipe(labels, low, output_type="pt", return_dict=False, generator=torch.Generator().manual_seed(0), **kw)[0]
    assert pt.shape == (1, 3, 32, 64)
    assert np.allclose(np_out[0], pt[0].permute(1, 2, 0).numpy(), atol=1e-6)


def test_accepts_pil_and_numpy_inputs(pipe):
    labels, low = _inputs()
    ref = pipe(labels, low, num_inference_steps=20, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    low_u8 = ((low[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    pil_map = PIL.Image.fromarray(labels[0].numpy().astype(np.uint8), mode="L")
    out = pipe(pil_map, PIL.Image.fromarray(low_u8), num_inference_steps=20, output_type="pt",
               generator=torch.Generator().manual_seed(0)).images
    out_np = pipe(labels[0].numpy().astype(np.uint8), low_u8, num_inference_steps=20, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    assert torch.allclose(out, out_np)
    assert (out - ref).abs().max() < 0.05  # only the uint8 rounding of the coarse image differs


def test_one_hot_input_equals_label_input(pipe):
    labels, low = _inputs()
    one_hot = pipe.prepare_segmentation_map(labels)
    assert one_hot[:, :, :2].sum() == 0  # ignore pixels are all-zero vectors
    a = pipe(labels, low, num_inference_steps=20, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    b = pipe(one_hot, low, num_inference_steps=20, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda l, lo: (l, lo.repeat(2, 1, 1, 1)), "mismatched batch sizes"),
        (lambda l, lo: (l, lo[..., :8, :8]), "aspect ratios disagree"),
        (lambda l, lo: (l.clamp(max=30) + 5, lo), "outside 0..18"),
        (lambda l, lo: (torch.rand(1, 7, 32, 64), lo), r"\[B, 19, H, W\]"),
        (lambda l, lo: (l, lo[:, :2]), "low_res_image"),
        (lambda l, lo: (l, lo * 3), r"in \[-1, 1\]"),
        (lambda l, lo: (l, lo.repeat(1, 1, 8, 8)), "larger than the segmentation map"),
        # Values are checked where they enter the pipeline (the UNet's forward checks shapes only).
        (lambda l, lo: (l, lo.index_fill(3, torch.tensor([2]), float("nan"))), "low_res_image contains NaN"),
        (lambda l, lo: (torch.full((1, 19, 32, 64), float("inf")), lo), "segmentation_map contains NaN"),
    ],
)
def test_bad_inputs_fail_clearly(pipe, make, message):
    with pytest.raises(ValueError, match=message):
        pipe(*make(*_inputs()), num_inference_steps=20)


def test_bad_arguments_fail_clearly(pipe):
    labels, low = _inputs()
    with pytest.raises(ValueError, match="output_type"):
        pipe(labels, low, output_type="jpg")
    with pytest.raises(ValueError, match="start_noise"):
        pipe(labels, low, start_noise="sometimes")
    with pytest.raises(ValueError, match="max_timestep"):
        pipe(labels, low, max_timestep=5000)
    with pytest.raises(ValueError, match="timesteps must be within"):
        pipe(labels, low, timesteps=[1500, 10])


def test_sizes_are_padded_and_cropped_back(pipe):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 19, (1, 31, 61), generator=g)
    low = torch.rand(1, 3, 8, 16, generator=g) * 2 - 1
    out = pipe(labels, low, num_inference_steps=20, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 3, 31, 61)
    with pytest.raises(ValueError, match="divisible by 2"):
        pipe(labels, low, num_inference_steps=20, pad_to_multiple_of_model=False)


def test_explicit_timesteps(pipe):
    seen, callback = _record_timesteps()
    pipe(*_inputs(), timesteps=[0, 90, 150, 40], output_type="pt", callback_on_step_end=callback)
    assert seen == [150, 90, 40, 0]


def test_instance_edge_model_needs_an_instance_map():
    torch.manual_seed(0)
    unet = SPICUNet2DModel(**TINY_UNET, num_semantic_channels=20, instance_edge_channel=True)
    pipe = SPICPipeline(unet=unet, scheduler=default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    labels, low = _inputs()
    with pytest.raises(ValueError, match="instance_map"):
        pipe(labels, low)
    instances = torch.zeros_like(labels)
    instances[:, 10:20, 10:30] = 26001
    seg = pipe.prepare_segmentation_map(labels, instances)
    assert seg.shape == (1, 20, 32, 64) and seg[:, 19].sum() > 0
    out = pipe(labels, low, instance_map=instances, num_inference_steps=20, output_type="pt",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 3, 32, 64)


def test_save_and_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "SPICPipeline"
    assert index["unet"] == ["spic_diffusers.models.unet_spic", "SPICUNet2DModel"]
    loaded = SPICPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.unet, SPICUNet2DModel)
    assert loaded.scheduler.config.variance_type == "learned_range"
    labels, low = _inputs()
    a = pipe(labels, low, num_inference_steps=20, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    b = loaded(labels, low, num_inference_steps=20, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    assert torch.allclose(a, b, atol=1e-6)


def test_from_pretrained_with_a_hub_id_offline(pipe, tmp_path, monkeypatch):
    """A Hub id resolves through the local snapshot cache (no network), as after a real download."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "cache" / "models--spic-test--tiny-spic"
    snapshot = repo / "snapshots" / commit
    pipe.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: the env is too late
    loaded = SPICPipeline.from_pretrained("spic-test/tiny-spic", cache_dir=str(tmp_path / "cache"))
    assert isinstance(loaded.unet, SPICUNet2DModel)
    with pytest.raises(OSError, match="spic-test/absent"):
        SPICPipeline.from_pretrained("spic-test/absent", cache_dir=str(tmp_path / "cache"))
    shutil.rmtree(tmp_path / "cache")


def test_callback_can_cut_classifier_free_guidance_off(pipe):
    """Diffusers' "CFG cut-off": a callback sets `_guidance_scale` and the next steps run one pass only."""
    batch_sizes, seen = [], []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0].shape[0]))

    def cut_off(p, i, t, kwargs):
        seen.append((p.guidance_scale, p.do_classifier_free_guidance, p.num_timesteps))
        if i == 4:
            p._guidance_scale = 0.0
        return {}

    try:
        pipe(*_inputs(), guidance_scale=1.5, guidance_batching="batched", output_type="pt",
             callback_on_step_end=cut_off)
    finally:
        hook.remove()
    assert batch_sizes == [2] * 5 + [1] * 15  # conditional + unconditional, then conditional only
    assert seen[0] == (1.5, True, 20) and seen[5] == (0.0, False, 20)
    assert pipe.guidance_scale == 0.0 and pipe.num_timesteps == 20


def test_callback_can_interrupt(pipe):
    seen, _ = _record_timesteps()

    def stop(p, i, t, kwargs):
        seen.append(int(t))
        p._interrupt = i == 2
        return {}

    pipe(*_inputs(), output_type="pt", callback_on_step_end=stop)
    assert seen == PAPER_VISITS[:3]


def test_no_step_below_max_timestep_says_which_step_counts_work(pipe):
    # trailing spacing with 4 steps visits 999, 749, 499, 249: none at or below 200; 5 steps reach 199
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    with pytest.raises(ValueError, match=r"max_timestep=200 with num_inference_steps=4; .*DDIMScheduler, "
                                         r"num_inference_steps=5 works \(also 6, 7"):
        pipe(*_inputs(), num_inference_steps=4, max_timestep=200)


# ------------------------------------------------------------------ latents, one sampling path


def test_latents_give_the_same_image_whatever_the_generator(pipe):
    """DDIM (eta 0) from a forward-noised start: the initial noise decides the image."""
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    labels, low = _inputs()
    noise = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(4))
    kw = dict(num_inference_steps=20, start_noise="forward", output_type="pt")
    a = pipe(labels, low, latents=noise, generator=torch.Generator().manual_seed(0), **kw).images
    b = pipe(labels, low, latents=noise.clone(), generator=torch.Generator().manual_seed(1), **kw).images
    c = pipe(labels, low, latents=noise.flip(-1), **kw).images
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    # The pure-noise start (max_timestep=None) takes them too, DDPM as well as DDIM.
    pipe.scheduler = default_scheduler()
    kw = dict(num_inference_steps=5, max_timestep=None, output_type="pt")
    d = pipe(labels, low, latents=noise, generator=torch.Generator().manual_seed(2), **kw).images
    e = pipe(labels, low, latents=noise, generator=torch.Generator().manual_seed(2), **kw).images
    f = pipe(labels, low, latents=noise.flip(-1), generator=torch.Generator().manual_seed(2), **kw).images
    assert torch.equal(d, e) and not torch.allclose(d, f, atol=1e-3)


@pytest.mark.parametrize(
    "latents, kwargs, message",
    [
        (torch.zeros(1, 3, 16, 32), {}, r"latents must have shape \(1, 3, 32, 64\).*got \(1, 3, 16, 32\)"),
        (torch.zeros(2, 3, 32, 64), {}, r"latents must have shape \(1, 3, 32, 64\)"),
        (torch.zeros(1, 3, 32, 64, dtype=torch.long), {}, "floating-point"),
        (torch.full((1, 3, 32, 64), float("nan")), {}, "latents contain NaN"),
        (torch.zeros(1, 3, 32, 64), dict(start_noise="none"), "unused"),
    ],
)
def test_bad_latents_fail_clearly(pipe, latents, kwargs, message):
    kwargs = {"start_noise": "forward", **kwargs}
    with pytest.raises(ValueError, match=message):
        pipe(*_inputs(), latents=latents, num_inference_steps=20, **kwargs)


def test_padded_sizes_take_latents_of_the_models_size(pipe):
    labels = torch.randint(0, 19, (1, 31, 61), generator=torch.Generator().manual_seed(0))
    low = torch.rand(1, 3, 8, 16) * 2 - 1
    with pytest.raises(ValueError, match=r"\(1, 3, 32, 62\)"):
        pipe(labels, low, latents=torch.zeros(1, 3, 31, 61), start_noise="forward", num_inference_steps=20)
    out = pipe(labels, low, latents=torch.zeros(1, 3, 32, 62), start_noise="forward", num_inference_steps=20,
               output_type="pt").images
    assert out.shape == (1, 3, 31, 61)


def test_latent_output_is_the_final_sample(pipe):
    labels, low = _inputs()
    kw = dict(num_inference_steps=20, generator=torch.Generator().manual_seed(0))
    last = []
    raw = pipe(labels, low, output_type="latent", callback_on_step_end=lambda p, i, t, k: last.append(k["sample"]),
               **kw).images
    assert torch.equal(raw, last[-1])
    kw["generator"] = torch.Generator().manual_seed(0)
    assert torch.allclose(pipe(labels, low, output_type="pt", **kw).images, (raw.clamp(-1, 1) + 1) / 2)


def test_prepare_latents_starts_where_the_paper_says(pipe):
    _, low = _inputs()
    noise = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(4))
    ts = pipe.get_timesteps(20, 200, None, "cpu")
    up = torch.nn.functional.interpolate(low, size=(32, 64), mode="bilinear", align_corners=False)
    shape = (1, 3, 32, 64)
    assert torch.equal(pipe.prepare_latents(low, shape, ts, "none", 200), up)
    forward = pipe.prepare_latents(low, shape, ts, "forward", 200, latents=noise)
    assert torch.equal(forward, pipe.scheduler.add_noise(up, noise, ts[:1]))
    assert torch.equal(pipe.prepare_latents(low, shape, ts, "none", None, latents=noise), noise)


def test_ddim_is_saved_and_loaded_by_its_class_name(pipe, tmp_path):
    """`DDIMScheduler` samples as SPIC's exact-predecessor DDIM; a folder records that class, and folders that name
    diffusers' DDIMScheduler (the shipped fast student) still load as it."""
    from spic_diffusers import SPICDDIMScheduler

    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    assert type(pipe.scheduler) is SPICDDIMScheduler
    labels, low = _inputs()
    image = pipe(labels, low, num_inference_steps=20, output_type="pt").images
    pipe.save_pretrained(tmp_path / "new")
    index = json.loads((tmp_path / "new" / "model_index.json").read_text())
    assert index["scheduler"] == ["spic_diffusers.pipelines.scheduling_spic_ddim", "SPICDDIMScheduler"]
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    index["scheduler"] = ["diffusers", "DDIMScheduler"]
    (tmp_path / "old" / "model_index.json").write_text(json.dumps(index))
    config_path = tmp_path / "old" / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    assert config["_class_name"] == "SPICDDIMScheduler"
    config_path.write_text(json.dumps({**config, "_class_name": "DDIMScheduler"}))
    for folder in ("new", "old"):
        loaded = SPICPipeline.from_pretrained(tmp_path / folder)
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded.scheduler) is SPICDDIMScheduler, folder
        assert torch.equal(loaded(labels, low, num_inference_steps=20, output_type="pt").images, image), folder

