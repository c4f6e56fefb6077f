import json
import os
from pathlib import Path

# Tiny models run fastest on one thread, and two threads per process stall badly when the cores are shared
# (subprocesses such as `accelerate launch` inherit this too).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))



def _find_fixtures() -> Path:
    """The reference fixtures (outputs of the authors' code): $SPIC_FIXTURES, the repository's copy, or ../shared."""
    here = Path(__file__).resolve().parent
    candidates = [here / "fixtures" / "spic_reference" / "tiny",
                  here.parents[1] / "shared" / "fixtures" / "spic_reference" / "tiny"]
    if os.environ.get("SPIC_FIXTURES"):
        candidates.insert(0, Path(os.environ["SPIC_FIXTURES"]).resolve())
    return next((path for path in candidates if (path / "model.pt").is_file()), candidates[0])


FIXTURES = _find_fixtures()

TINY_UNET = dict(
    sample_size=(32, 64),
    block_out_channels=(32, 64),
    layers_per_block=1,
    attention_downsample_factors=(2,),
    attention_head_dim=16,
    spade_hidden_channels=16,  # the original's 128 at full resolution dominates the cost of a tiny model
)


def load_fixture(name: str) -> dict:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"reference fixture {path} not found (set SPIC_FIXTURES to the folder holding it)")
    if name.endswith(".json"):
        return json.loads(path.read_text())
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def fixture_unet():
    from spic_diffusers.conversion import load_original_checkpoint, unet_from_original_checkpoint

    if not (FIXTURES / "model.pt").exists():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (set SPIC_FIXTURES to their folder)")
    state = load_original_checkpoint(FIXTURES / "model.pt")
    return unet_from_original_checkpoint(state, load_fixture("config.json")).eval()


@pytest.fixture()
def no_ffmpeg(monkeypatch, tmp_path):
    """A machine without any ffmpeg: an empty PATH and imageio-ffmpeg pointed at a binary that is not there."""
    from spic_diffusers.codec import coarse

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    monkeypatch.setattr(coarse, "_FFMPEG_PATH", None)  # forget the ffmpeg found earlier in this process


@pytest.fixture()
def tiny_unet():
    from spic_diffusers import SPICUNet2DModel

    torch.manual_seed(0)
    return SPICUNet2DModel(**TINY_UNET).eval()


def save_tiny_segformer(path, height: int = 32, width: int = 64, id2label: dict | None = None):
    """A randomly initialised two-stage SegFormer over the 19 Cityscapes train classes, saved to `path`."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    from spic_diffusers.data import ID2LABEL

    id2label = id2label or {i: ID2LABEL[i] for i in range(19)}
    torch.manual_seed(0)
    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2], decoder_hidden_size=16,
        num_labels=len(id2label), id2label=dict(id2label), label2id={v: k for k, v in id2label.items()},
    )  # fmt: skip
    SegformerForSemanticSegmentation(config).save_pretrained(path)
    SegformerImageProcessor(size={"height": height, "width": width}).save_pretrained(path)
    return path


@pytest.fixture()
def unreachable_hub(monkeypatch):
    """Point huggingface_hub and datasets at a closed local port: every Hub call fails to connect, at once."""
    import datasets.config
    from huggingface_hub import constants

    endpoint = "http://127.0.0.1:9"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", endpoint)
    return endpoint
