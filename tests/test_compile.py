"""`torch.compile(fullgraph=True)` takes the UNet whole, and `pipe.compile()` decodes like the eager pipeline."""

import shutil

import pytest
import torch

from spic_diffusers import SPICPipeline, SPICUNet2DModel
from spic_diffusers.pipelines.pipeline_spic import default_scheduler
from spic_diffusers.training.distill import student_pipeline

from conftest import TINY_UNET


def _inductor_compiler() -> str | None:
    """The C++ compiler inductor builds CPU kernels with (the first of `torch._inductor.config.cpp.cxx` found)."""
    from torch._inductor import config

    names = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)
    return next((shutil.which(name) for name in names if name and shutil.which(name)), None)


pytestmark = pytest.mark.skipif(
    _inductor_compiler() is None,
    reason="torch.compile's inductor backend needs a C++ compiler on CPU (set CXX or install g++)",
)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    yield
    torch._dynamo.reset()  # compiled graphs and their guards are per process: do not carry them between tests


def _unet():
    torch.manual_seed(0)
    return SPICUNet2DModel(**TINY_UNET).eval()


def _inputs(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 19, (batch, 32, 64), generator=g)
    return labels, torch.rand(batch, 3, 8, 16, generator=g) * 2 - 1


def test_fullgraph_compile_matches_eager():
    unet = _unet()
    labels, low = _inputs(batch=2)
    seg = torch.nn.functional.one_hot(labels, 19).permute(0, 3, 1, 2).float()
    sample = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(1))
    compiled = torch.compile(unet, fullgraph=True)
    with torch.no_grad():
        for t in (torch.tensor(192), torch.tensor([91, 30])):
            eager = unet(sample, t, seg, low).sample
            assert torch.allclose(compiled(sample, t, seg, low).sample, eager, atol=1e-4)


def test_compiled_paper_sampler_decodes_as_eager():
    """DDPM, guidance 1.5 (two passes a step), channels-last on CPU: the pipeline's own loop, compiled."""
    pipe = SPICPipeline(unet=_unet(), scheduler=default_scheduler())
    pipe.set_progress_bar_config(disable=True)
    labels, low = _inputs()
    kw = dict(num_inference_steps=50, output_type="pt")
    eager = pipe(labels, low, generator=torch.Generator().manual_seed(0), **kw).images
    assert pipe.compile() is pipe
    compiled = pipe(labels, low, generator=torch.Generator().manual_seed(0), **kw).images
    assert torch.allclose(compiled, eager, atol=1e-4), (compiled - eager).abs().max()


def test_compiled_fast_student_runs_its_saved_schedule(tmp_path):
    """A saved few-step student (DDIM, its timesteps, guidance 1.0, forward-noised start, bf16 autocast)."""
    student = student_pipeline(_unet(), default_scheduler().config, [192, 91], start_noise="forward",
                               unet_dtype="bf16")
    student.save_pretrained(tmp_path)
    pipe = SPICPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    labels, low = _inputs()
    noise = torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(3))
    seen = []
    kw = dict(latents=noise, unet_dtype="bf16", output_type="pt")
    eager = pipe(labels, low, **kw).images
    pipe.compile()
    compiled = pipe(labels, low, callback_on_step_end=lambda p, i, t, k: seen.append(int(t)) or {}, **kw).images
    assert seen == [192, 91]
    # bf16 rounding differs between inductor's fused kernels and eager ones; the decode is the same otherwise.
    assert (compiled - eager).abs().max() < 0.05
