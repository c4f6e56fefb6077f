import pytest
import torch
from diffusers import UNet2DModel
from diffusers.models.attention_processor import AttnProcessor2_0

from spic_diffusers import SPICUNet2DModel

from conftest import TINY_UNET, load_fixture


def _inputs(batch=2, height=32, width=64, classes=19, low=(8, 16)):
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, classes, (batch, height, width), generator=g)
    seg = torch.nn.functional.one_hot(labels, classes).permute(0, 3, 1, 2).float()
    return (torch.randn(batch, 3, height, width, generator=g), torch.tensor([3, 900][:batch]), seg,
            torch.rand(batch, 3, *low, generator=g) * 2 - 1)


def test_is_a_diffusers_unet2d(tiny_unet):
    assert isinstance(tiny_unet, UNet2DModel)
    out = tiny_unet(*_inputs())
    assert out.sample.shape == (2, 6, 32, 64)
    assert tiny_unet(*_inputs(), return_dict=False)[0].shape == (2, 6, 32, 64)


def test_fixture_forward_matches_original(fixture_unet):
    fw = load_fixture("forward.pt")
    with torch.no_grad():
        out = fixture_unet(sample=fw["x"], timestep=fw["timesteps"], segmentation_map=fw["segmap"],
                           low_res_image=fw["low_res"]).sample
    assert torch.allclose(out, fw["output"], atol=1e-5, rtol=0), (out - fw["output"]).abs().max()


def test_save_load_round_trip(fixture_unet, tmp_path):
    fw = load_fixture("forward.pt")
    fixture_unet.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = SPICUNet2DModel.from_pretrained(tmp_path).eval()
    assert list(loaded.config.block_out_channels) == list(fixture_unet.config.block_out_channels)
    with torch.no_grad():
        out = loaded(fw["x"], fw["timesteps"], fw["segmap"], fw["low_res"]).sample
    assert torch.allclose(out, fw["output"], atol=1e-5, rtol=0)


def test_attention_runs_through_sdpa(tiny_unet):
    procs = tiny_unet.attn_processors
    assert procs and all(isinstance(p, AttnProcessor2_0) for p in procs.values())
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = counting
    try:
        with torch.no_grad():
            tiny_unet(*_inputs())
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    assert len(calls) == len(procs)


@pytest.mark.parametrize("size", [(32, 64), (64, 32), (48, 80), (16, 16)])
def test_any_divisible_size_works(size):
    torch.manual_seed(0)
    model = SPICUNet2DModel(**{**TINY_UNET, "block_out_channels": (32, 32, 64), "attention_downsample_factors": (4,)})
    with torch.no_grad():
        out = model(*_inputs(1, *size, low=(size[0] // 4, size[1] // 4))).sample
    assert out.shape == (1, 6, *size)


def test_scalar_timestep_broadcasts(tiny_unet):
    x, _, seg, low = _inputs()
    with torch.no_grad():
        a = tiny_unet(x, 500, seg, low).sample
        b = tiny_unet(x, torch.tensor([500, 500]), seg, low).sample
    assert torch.allclose(a, b)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda x, t, s, l: (x[:, :2], t, s, l), "sample must have 3 channels"),
        (lambda x, t, s, l: (x, t, s[:, :5], l), "segmentation_map must have 19 channels"),
        (lambda x, t, s, l: (x, t, s, l[:, :1]), "low_res_image must have 3 channels"),
        (lambda x, t, s, l: (x[0], t, s, l), "4-D tensor"),
        (lambda x, t, s, l: (x[..., :31, :63], t, s[..., :31, :63], l), "not divisible by 2"),
        (lambda x, t, s, l: (x, t, s[..., :16, :32], l), "segmentation_map must have the sample's size"),
        (lambda x, t, s, l: (x, t, s[:1], l), "batch sizes differ"),
        (lambda x, t, s, l: (x, torch.tensor([1, 2, 3]), s, l), "timestep must be a scalar"),
    ],
)
def test_bad_input_raises_value_error(tiny_unet, mutate, message):
    with pytest.raises(ValueError, match=message):
        tiny_unet(*mutate(*_inputs()))


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    model = SPICUNet2DModel(**TINY_UNET)
    x, t, seg, low = _inputs()

    def grads():
        model.zero_grad()
        model(x, t, seg, low).sample.square().mean().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    plain = grads()
    model.enable_gradient_checkpointing()
    checkpointed = grads()
    assert torch.allclose(plain, checkpointed, atol=1e-6)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="attention_head_dim"):
        SPICUNet2DModel(**{**TINY_UNET, "attention_head_dim": 24})
    with pytest.raises(ValueError, match="downsample_type"):
        SPICUNet2DModel(**{**TINY_UNET, "downsample_type": "fir"})
    with pytest.raises(ValueError, match="resnet_time_scale_shift"):
        SPICUNet2DModel(**{**TINY_UNET, "resnet_time_scale_shift": "spatial"})


def test_fuse_qkv_projections_gives_the_same_outputs(tiny_unet):
    inputs = _inputs()
    keys = set(tiny_unet.state_dict())
    with torch.no_grad():
        before = tiny_unet(*inputs).sample
        tiny_unet.fuse_qkv_projections()
        tiny_unet.fuse_qkv_projections()  # a second call keeps the first fusion
        layers = [m for m in tiny_unet.modules() if hasattr(m, "to_qkv")]
        assert layers and all(m.fused_projections for m in layers)
        fused = tiny_unet(*inputs).sample
        for layer in layers:  # the fused matrix is the one used: spoiling it changes the output
            layer.to_qkv.weight.mul_(2)
        spoiled = tiny_unet(*inputs).sample
        for layer in layers:
            layer.to_qkv.weight.div_(2)
        tiny_unet.unfuse_qkv_projections()
        after = tiny_unet(*inputs).sample
    assert torch.allclose(before, fused, atol=1e-5) and not torch.allclose(before, spoiled, atol=1e-3)
    assert torch.equal(before, after)
    assert set(tiny_unet.state_dict()) == keys
    assert all(isinstance(p, AttnProcessor2_0) for p in tiny_unet.attn_processors.values())

