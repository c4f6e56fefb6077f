"""Original SPIC (guided-diffusion) checkpoints <-> `SPICUNet2DModel`, in both directions.

One table of (original prefix, our prefix, kind) pairs is derived from the model config; both directions
walk the same table, so a weight that converts one way converts back. Attention is the only non-rename:
the original fused `qkv` conv uses the legacy head order (per head: q, k, v), split here per head.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

# The paper's command line (Cityscapes, 256x512).
PAPER_ORIGINAL_OPTIONS: dict[str, Any] = {
    "image_size": 256,
    "num_channels": 256,
    "num_res_blocks": 2,
    "channel_mult": "",
    "attention_resolutions": "32,16,8",
    "num_head_channels": 64,
    "num_heads": 1,
    "num_heads_upsample": -1,
    "resblock_updown": True,
    "use_scale_shift_norm": True,
    "learn_sigma": True,
    "num_classes": 19,
    "no_instance": True,
    "use_new_attention_order": False,
    "dropout": 0.0,
}

ORIGINAL_OPTION_NAMES = tuple(PAPER_ORIGINAL_OPTIONS) + ("conv_resample",)

_DEFAULT_CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_SPADE_RESNET = {"in_norm": "norm1", "in_layers.1": "conv1", "emb_layers.1": "time_emb_proj",
                 "out_norm": "norm2", "out_layers.2": "conv2", "skip_connection": "conv_shortcut"}
_ATTENTION = {"norm": "group_norm", "proj_out": "to_out.0"}
_PLAIN = {"": ""}
_RENAMES = {"resnet": _RESNET, "spade_resnet": _SPADE_RESNET, "attention": _ATTENTION, "plain": _PLAIN,
            "op": {"op": "conv"}}


class ConversionError(ValueError):
    """The checkpoint and the model configuration do not match."""


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):  # the spellings the original code's str2bool accepts
        if value.lower() in ("true", "1", "yes", "t", "y"):
            return True
        if value.lower() in ("false", "0", "no", "f", "n"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


def _as_int_tuple(value: Any) -> tuple:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    out = []
    for v in value:
        f = float(v)
        out.append(int(f) if f.is_integer() else f)
    return tuple(out)


def original_options_to_unet_config(options: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Map the original code's model options (`--num_channels 256 ...`) to a `SPICUNet2DModel` config.

    Missing options take the paper's values. Accepts the flat dict or one with a `"model"` key (fixtures).
    """
    opts = dict(PAPER_ORIGINAL_OPTIONS)
    given = dict(options or {})
    if isinstance(given.get("model"), Mapping):
        given = {**given, **given["model"]}
    given.update(overrides)
    opts.update({k: v for k, v in given.items() if k in ORIGINAL_OPTION_NAMES and v is not None})

    image_size = int(opts["image_size"])
    channel_mult = opts["channel_mult"]
    if channel_mult in ("", None, ()):
        if image_size not in _DEFAULT_CHANNEL_MULT:
            raise ValueError(f"no default channel_mult for image_size {image_size}: pass channel_mult")
        channel_mult = _DEFAULT_CHANNEL_MULT[image_size]
    else:
        channel_mult = _as_int_tuple(channel_mult)
    model_channels = int(opts["num_channels"])
    block_out = tuple(int(m * model_channels) for m in channel_mult)
    attention_ds = tuple(sorted(image_size // int(r) for r in _as_int_tuple(opts["attention_resolutions"])))
    num_head_channels = int(opts["num_head_channels"])
    num_heads = int(opts["num_heads"])
    num_heads_up = int(opts["num_heads_upsample"])
    if _as_bool(opts.get("use_new_attention_order", False)):
        raise NotImplementedError(
            "use_new_attention_order=True checkpoints are not supported (SPIC uses the legacy order)"
        )
    resblock_updown = _as_bool(opts["resblock_updown"])
    conv_resample = _as_bool(opts.get("conv_resample", True))
    with_edges = not _as_bool(opts["no_instance"])
    num_classes = int(opts["num_classes"]) + int(with_edges)
    # The original SPIC samples are 256x512 for image_size 256 (Cityscapes is 1:2).
    return {
        "sample_size": (image_size, 2 * image_size),
        "in_channels": 3,
        "low_res_channels": 3,
        "out_channels": 6 if _as_bool(opts["learn_sigma"]) else 3,
        "num_semantic_channels": num_classes,
        "instance_edge_channel": with_edges,
        "block_out_channels": block_out,
        "layers_per_block": int(opts["num_res_blocks"]),
        "attention_downsample_factors": attention_ds,
        "attention_head_dim": None if num_head_channels == -1 else num_head_channels,
        "num_attention_heads": None if num_head_channels != -1 else num_heads,
        "num_attention_heads_upsample": None if num_head_channels != -1 or num_heads_up == -1 else num_heads_up,
        "downsample_type": "resnet" if resblock_updown else ("conv" if conv_resample else "pool"),
        "upsample_type": "resnet" if resblock_updown else ("conv" if conv_resample else "nearest"),
        "resnet_time_scale_shift": "scale_shift" if _as_bool(opts["use_scale_shift_norm"]) else "default",
        "time_embedding_channels": model_channels,
        "dropout": float(opts.get("dropout", 0.0)),
    }


def infer_original_options(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Read what a checkpoint's keys and shapes fix: channels, levels, blocks, attention, time-norm, sigma."""
    sd = state_dict
    for key in ("time_embed.0.weight", "input_blocks.0.0.weight", "out.2.weight"):
        if key not in sd:
            raise ConversionError(f"not an original SPIC/guided-diffusion UNet state dict: key {key!r} is missing")
    model_channels = sd["time_embed.0.weight"].shape[1]
    opts: dict[str, Any] = {"num_channels": model_channels, "learn_sigma": sd["out.2.weight"].shape[0] == 6}

    def block_ids(prefix: str) -> list[int]:
        return sorted({int(k.split(".")[1]) for k in sd if k.startswith(prefix + ".")})

    out_ids = block_ids("output_blocks")
    # An output block with a SPADE up-sampling resblock or an up-sampling conv ends a level.
    up_ends, resblock_up = [], None
    for i in out_ids:
        subs = sorted({int(k.split(".")[2]) for k in sd if k.startswith(f"output_blocks.{i}.")})
        last = subs[-1]
        pre = f"output_blocks.{i}.{last}."
        if last > 0 and f"{pre}in_norm.mlp_shared.0.weight" in sd:
            up_ends.append(i)
            resblock_up = True
        elif last > 0 and f"{pre}conv.weight" in sd:
            up_ends.append(i)
            resblock_up = False
    if up_ends:
        per_level = up_ends[0] + 1
        num_levels = len(out_ids) // per_level
        opts["num_res_blocks"] = per_level - 1
        opts["resblock_updown"] = resblock_up
        if not resblock_up:
            opts["conv_resample"] = True
    else:
        num_levels = None  # one level, or parameter-free resampling: levels come from the options
    if num_levels:
        nrb = opts["num_res_blocks"]
        mults, attn_ds = [], []
        for level in range(num_levels):
            first_out_block = (num_levels - 1 - level) * (nrb + 1)
            ch = sd[f"output_blocks.{first_out_block}.0.out_layers.2.weight"].shape[0]
            mult = ch / model_channels
            mults.append(int(mult) if float(mult).is_integer() else mult)
            if f"output_blocks.{first_out_block}.1.qkv.weight" in sd:
                attn_ds.append(2 ** level)
        opts["channel_mult"] = ",".join(str(m) for m in mults)
        opts["_attention_ds"] = tuple(attn_ds)
    emb_key = "input_blocks.1.0.emb_layers.1.weight"
    emb_out = sd[emb_key].shape[0] if emb_key in sd else None
    out_ch = sd["input_blocks.1.0.out_layers.3.weight"].shape[0] if emb_out is not None else None
    if emb_out is not None:
        opts["use_scale_shift_norm"] = emb_out == 2 * out_ch
    spade = next((k for k in sd if k.endswith("in_norm.mlp_shared.0.weight")), None)
    if spade is not None:
        opts["_num_semantic_channels"] = sd[spade].shape[1]
    return opts


def resolve_unet_config(
    state_dict: Mapping[str, torch.Tensor] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Combine user options (flags / JSON) with what the checkpoint shows; contradictions are errors."""
    given = dict(options or {})
    if isinstance(given.get("model"), Mapping):
        given = {**{k: v for k, v in given.items() if k != "model"}, **given["model"]}
    given = {k: v for k, v in given.items() if v is not None}
    inferred = infer_original_options(state_dict) if state_dict is not None else {}
    attn_ds = inferred.pop("_attention_ds", None)
    num_sem = inferred.pop("_num_semantic_channels", None)
    if given.get("channel_mult") in ("", ()) and "channel_mult" in inferred:
        # The original's default "" means "pick by image size": the checkpoint shows what was picked.
        image_size = int(given.get("image_size", PAPER_ORIGINAL_OPTIONS["image_size"]))
        picked = _DEFAULT_CHANNEL_MULT.get(image_size)
        if picked is not None and picked != _as_int_tuple(inferred["channel_mult"]):
            raise ConversionError(
                f"channel_mult='' picks {','.join(map(str, picked))} for image_size {image_size}, but the checkpoint "
                f"has {inferred['channel_mult']}; pass the checkpoint's image_size or channel_mult"
            )
        given.pop("channel_mult")
    merged = {**inferred, **given}
    config = original_options_to_unet_config(merged)
    for key, value in inferred.items():
        if key in given and key != "channel_mult" and _normalise(given[key]) != _normalise(value):
            raise ConversionError(f"option {key}={given[key]!r} contradicts the checkpoint, which has {key}={value!r}")
    if "channel_mult" in given and "channel_mult" in inferred:
        if _as_int_tuple(given["channel_mult"]) != _as_int_tuple(inferred["channel_mult"]):
            raise ConversionError(
                f"option channel_mult={given['channel_mult']!r} contradicts the checkpoint ({inferred['channel_mult']})"
            )
    if attn_ds is not None:
        if "attention_resolutions" in given and tuple(config["attention_downsample_factors"]) != attn_ds:
            raise ConversionError(
                f"attention_resolutions={given['attention_resolutions']!r} puts attention at down-sampling "
                f"factors {config['attention_downsample_factors']}, the checkpoint has it at {attn_ds}"
            )
        config["attention_downsample_factors"] = attn_ds
    if num_sem is not None:
        if ("num_classes" in given or "no_instance" in given) and config["num_semantic_channels"] != num_sem:
            raise ConversionError(
                f"num_classes/no_instance give {config['num_semantic_channels']} semantic channels, "
                f"the checkpoint has {num_sem}"
            )
        if "num_classes" not in given and "no_instance" not in given:
            # Cityscapes: 19 classes, plus the instance-edge channel when there are 20.
            config["instance_edge_channel"] = num_sem == PAPER_ORIGINAL_OPTIONS["num_classes"] + 1
        config["num_semantic_channels"] = num_sem
    if "image_size" not in given:
        config.pop("sample_size")  # keep the model default (the paper's 256x512)
    return config


def scheduler_config_from_original_options(options: Mapping[str, Any] | None = None, learn_sigma: bool = True):
    """The `DDPMScheduler` config of the original diffusion options (its argument parser's names and defaults).

    Sampling-only options (`timestep_respacing`, `use_ddim`, ...) and training-only ones (`use_kl`,
    `rescale_learned_sigmas`) are accepted and do not change the trained process; options the pipeline
    cannot express raise :class:`ConversionError`.
    """
    given = dict(options or {})
    if isinstance(given.get("diffusion"), Mapping):
        given = {**given, **given["diffusion"]}
    steps = int(given.get("diffusion_steps") or 1000)
    schedule = str(given.get("noise_schedule") or "linear")
    if schedule not in ("linear", "cosine"):
        raise ConversionError(f"noise_schedule={schedule!r} is not one of the original's linear, cosine")
    if _as_bool(given.get("predict_xstart", False)):
        raise ConversionError("predict_xstart=True (a model that predicts x0) is not supported: SPIC predicts noise")
    if _as_bool(given.get("rescale_timesteps", False)) and steps != 1000:
        raise ConversionError(f"rescale_timesteps=True with diffusion_steps={steps} is not supported")
    scale = 1000 / steps  # the original scales its linear betas so any step count spans the same process
    return {
        "num_train_timesteps": steps,
        "beta_schedule": "linear" if schedule == "linear" else "squaredcos_cap_v2",
        "beta_start": scale * 0.0001,
        "beta_end": scale * 0.02,
        "variance_type": "learned_range" if learn_sigma else "fixed_large",
    }


def _normalise(value: Any) -> Any:
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, (int, float, bool)):
        return float(value) if not isinstance(value, bool) else value
    return str(value)


def _layout(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(original prefix, our prefix, kind) for every block of a model with this config."""
    block_out = list(config["block_out_channels"])
    nrb = config["layers_per_block"]
    attn = set(config["attention_downsample_factors"])
    down_type = config.get("downsample_type", "resnet")
    up_type = config.get("upsample_type", "resnet")
    levels = len(block_out)
    rows = [("time_embed.0", "time_embedding.linear_1", "plain"), ("time_embed.2", "time_embedding.linear_2", "plain"),
            ("input_blocks.0.0", "conv_in", "plain")]
    n = 1
    for level in range(levels):
        for i in range(nrb):
            rows.append((f"input_blocks.{n}.0", f"down_blocks.{level}.resnets.{i}", "resnet"))
            if 2 ** level in attn:
                rows.append((f"input_blocks.{n}.1", f"down_blocks.{level}.attentions.{i}", "attention"))
            n += 1
        if level != levels - 1:
            kind = {"resnet": "resnet", "conv": "op", "pool": None}[down_type]
            if kind:
                rows.append((f"input_blocks.{n}.0", f"down_blocks.{level}.downsamplers.0", kind))
            n += 1
    rows += [("middle_block.0", "mid_block.resnets.0", "spade_resnet"),
             ("middle_block.1", "mid_block.attentions.0", "attention"),
             ("middle_block.2", "mid_block.resnets.1", "spade_resnet")]
    m = 0
    for u, level in enumerate(reversed(range(levels))):
        for i in range(nrb + 1):
            rows.append((f"output_blocks.{m}.0", f"up_blocks.{u}.resnets.{i}", "spade_resnet"))
            sub = 1
            if 2 ** level in attn:
                rows.append((f"output_blocks.{m}.1", f"up_blocks.{u}.attentions.{i}", "attention"))
                sub = 2
            if level and i == nrb:
                kind = {"resnet": "spade_resnet", "conv": "plain", "nearest": None}[up_type]
                if kind:
                    rows.append((f"output_blocks.{m}.{sub}", f"up_blocks.{u}.upsamplers.0", kind))
            m += 1
    rows += [("out.0", "conv_norm_out", "plain"), ("out.2", "conv_out", "plain")]
    return rows


def _attention_heads(config: Mapping[str, Any], our_prefix: str) -> int:
    channels = _attention_channels(config, our_prefix)
    if config.get("attention_head_dim"):
        return channels // config["attention_head_dim"]
    if our_prefix.startswith("up_blocks"):
        return config.get("num_attention_heads_upsample") or config["num_attention_heads"]
    return config["num_attention_heads"]


def _attention_channels(config: Mapping[str, Any], our_prefix: str) -> int:
    block_out = list(config["block_out_channels"])
    parts = our_prefix.split(".")
    if parts[0] == "mid_block":
        return block_out[-1]
    level = int(parts[1])
    return block_out[level] if parts[0] == "down_blocks" else block_out[len(block_out) - 1 - level]


def _split_rest(key: str, prefix: str) -> str | None:
    if key == prefix:
        return ""
    if key.startswith(prefix + "."):
        return key[len(prefix) + 1:]
    return None


def convert_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """Original SPIC keys -> `SPICUNet2DModel` keys. Every key must be used exactly once."""
    rows = _layout(config)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    by_prefix = {}
    for key in state_dict:
        parts = key.split(".")
        for cut in (3, 2, 1):  # longest block prefix first ("input_blocks.3.0", "out.0", "time_embed.0")
            by_prefix.setdefault(".".join(parts[:cut]), []).append(key)
    for orig, ours, kind in rows:
        keys = by_prefix.get(orig, [])
        if kind == "attention":
            qkv_w, qkv_b = f"{orig}.qkv.weight", f"{orig}.qkv.bias"
            if qkv_w in state_dict and qkv_b in state_dict:
                heads = _attention_heads(config, ours)
                w, b = state_dict[qkv_w], state_dict[qkv_b]
                c = w.shape[1]
                if w.shape[0] != 3 * c or c % heads:
                    raise ConversionError(f"{qkv_w} has shape {tuple(w.shape)}, which does not fit {heads} heads")
                w = w.reshape(heads, 3, c // heads, c)
                b = b.reshape(heads, 3, c // heads)
                for j, name in enumerate(("to_q", "to_k", "to_v")):
                    out[f"{ours}.{name}.weight"] = w[:, j].reshape(c, c).clone()
                    out[f"{ours}.{name}.bias"] = b[:, j].reshape(c).clone()
                used.update((qkv_w, qkv_b))
        renames = _RENAMES[kind]
        for key in keys:
            if key in used:
                continue
            rest = _split_rest(key, orig)
            for src, dst in renames.items():
                tail = rest if src == "" else _split_rest(rest, src)
                if tail is None:
                    continue
                new = ".".join(p for p in (ours, dst, tail) if p)
                tensor = state_dict[key]
                if kind == "attention" and src == "proj_out" and tensor.ndim == 3:
                    tensor = tensor[..., 0]
                out[new] = tensor
                used.add(key)
                break
    leftover = sorted(set(state_dict) - used)
    if leftover:
        raise ConversionError(
            f"{len(leftover)} checkpoint key(s) do not belong to a model with this configuration: "
            f"{', '.join(leftover[:20])}{' ...' if len(leftover) > 20 else ''}"
        )
    return out


def original_code_incompatibilities(config: Mapping[str, Any]) -> list[str]:
    """What in a `SPICUNet2DModel` config the original code cannot build (empty when it can).

    The original fixes SPADE's hidden width (128), the group count (32), derives every level's width as an
    integer multiple of one base width that is also the timestep-embedding width, and uses one choice of
    up/down sampling for both paths.
    """
    problems = []
    if int(config.get("spade_hidden_channels", 128)) != 128:
        problems.append(f"spade_hidden_channels={config['spade_hidden_channels']} (the original's SPADE has 128)")
    if int(config.get("norm_num_groups", 32)) != 32:
        problems.append(f"norm_num_groups={config['norm_num_groups']} (the original uses 32)")
    if int(config.get("in_channels", 3)) != 3 or int(config.get("low_res_channels", 3)) != 3:
        problems.append("in_channels and low_res_channels must both be 3")
    blocks = [int(c) for c in config["block_out_channels"]]
    base = int(config.get("time_embedding_channels") or blocks[0])
    ratios = [c / base for c in blocks]
    half_first = ratios[0] == 0.5 and all(r.is_integer() for r in ratios[1:])  # the original's 512 default
    if not (all(r.is_integer() for r in ratios) or half_first):
        problems.append(f"block_out_channels {tuple(blocks)} are not integer multiples of the base width {base}")
    pair = (config.get("downsample_type", "resnet"), config.get("upsample_type", "resnet"))
    if pair not in (("resnet", "resnet"), ("conv", "conv"), ("pool", "nearest")):
        problems.append(f"downsample_type/upsample_type {pair} (the original pairs resnet/resnet, conv/conv or "
                        "pool/nearest)")
    return problems


def convert_to_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    """`SPICUNet2DModel` keys -> original SPIC keys (so weights trained here run in the original code)."""
    rows = _layout(config)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for orig, ours, kind in rows:
        if kind == "attention":
            names = [f"{ours}.{n}.{p}" for n in ("to_q", "to_k", "to_v") for p in ("weight", "bias")]
            if all(n in state_dict for n in names):
                heads = _attention_heads(config, ours)
                ws = [state_dict[f"{ours}.{n}.weight"] for n in ("to_q", "to_k", "to_v")]
                bs = [state_dict[f"{ours}.{n}.bias"] for n in ("to_q", "to_k", "to_v")]
                c = ws[0].shape[1]
                w = torch.stack([x.reshape(heads, c // heads, c) for x in ws], dim=1).reshape(3 * c, c, 1)
                b = torch.stack([x.reshape(heads, c // heads) for x in bs], dim=1).reshape(3 * c)
                out[f"{orig}.qkv.weight"], out[f"{orig}.qkv.bias"] = w.clone(), b.clone()
                used.update(names)
        renames = _RENAMES[kind]
        for key in state_dict:
            if key in used:
                continue
            rest = _split_rest(key, ours)
            if rest is None:
                continue
            for src, dst in renames.items():
                tail = rest if dst == "" else _split_rest(rest, dst)
                if tail is None:
                    continue
                new = ".".join(p for p in (orig, src, tail) if p)
                tensor = state_dict[key]
                if kind == "attention" and src == "proj_out" and tensor.ndim == 2:
                    tensor = tensor[..., None]
                out[new] = tensor
                used.add(key)
                break
    leftover = sorted(set(state_dict) - used)
    if leftover:
        raise ConversionError(f"{len(leftover)} model key(s) have no original counterpart: {', '.join(leftover[:20])}")
    return out


MAX_CHECKPOINT_RECORDS = 100_000
# The UNet's parameter budget (models.unet_spic.MAX_PARAMETERS) in float32; a constant here so that refusing an
# archive does not import the model code.
MAX_CHECKPOINT_BYTES = 4 * 8_000_000_000


def check_checkpoint_archive(path: str | os.PathLike, max_bytes: int | None = None) -> None:
    """Read a ``torch.save`` archive's directory before ``torch.load`` inflates anything.

    ``torch.save`` stores every record uncompressed, so what ``torch.load`` allocates is what the file holds.
    A 1.5 MB record that inflates to 1.5 GB (or one whose declared size differs from its stored size) is no
    checkpoint this converter accepts; nor is the pre-1.6 format, whose storages are allocated at the size
    the stream declares.  ``max_bytes`` (default :data:`MAX_CHECKPOINT_BYTES`) bounds the total.
    """
    import zipfile

    path = os.fspath(path)
    max_bytes = MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    if not zipfile.is_zipfile(path):
        raise ConversionError(
            f"{path} is not a zip-format torch checkpoint (the format of torch.save since PyTorch 1.6); load it in "
            "a trusted session and save it again with torch.save"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ConversionError(f"{path} is a damaged checkpoint archive ({err})") from None
    if len(records) > MAX_CHECKPOINT_RECORDS:
        raise ConversionError(f"{path} holds {len(records)} records, more than a checkpoint has")
    file_size, total = os.path.getsize(path), 0
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.file_size != record.compress_size:
            raise ConversionError(
                f"{path}: record {record.filename} is compressed ({record.compress_size} bytes inflating to "
                f"{record.file_size}); torch.save stores records uncompressed"
            )
        total += record.file_size
    if total > min(file_size, max_bytes):
        raise ConversionError(
            f"{path} declares {total} bytes of records, more than the file ({file_size} bytes) or the budget "
            f"({max_bytes} bytes) holds"
        )


def load_original_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load an original `model.pt` safely (`weights_only=True`); anything that is not a state dict is refused."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    check_checkpoint_archive(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle with code, truncated file, not a torch file
        raise ConversionError(
            f"{path} could not be loaded with torch.load(weights_only=True) ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); only plain state dicts of tensors are accepted"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path} is not a state dict of tensors (got {type(obj).__name__})")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    return state


def load_original_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read original options from a JSON file: flat (a dump of the original's parsed arguments) or with
    `"model"` / `"diffusion"` sections, which are merged (the model's values win)."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of original options")
    sections = {key: data[key] for key in ("diffusion", "model") if isinstance(data.get(key), dict)}
    if sections:
        data = {k: v for k, v in data.items() if k not in sections}
        for section in sections.values():
            data.update(section)
    return data


def check_checkpoint_tensors(state_dict: Mapping[str, torch.Tensor]) -> None:
    """Refuse tensors that claim more elements than their storage holds (stride 0, overlapping views),
    checkpoints above the parameter budget, and NaN or infinite weights, before anything is allocated."""
    from .models.unet_spic import MAX_PARAMETERS

    total = 0
    for key, tensor in state_dict.items():
        if any(stride == 0 and size > 1 for stride, size in zip(tensor.stride(), tensor.shape)):
            raise ConversionError(f"{key} has a zero stride (shape {tuple(tensor.shape)}): not a stored weight")
        needed = tensor.numel() * tensor.element_size()
        if needed > tensor.untyped_storage().nbytes():
            raise ConversionError(
                f"{key} claims {needed} bytes (shape {tuple(tensor.shape)}) but its storage holds "
                f"{tensor.untyped_storage().nbytes()}: not a stored weight"
            )
        total += tensor.numel()
    if total > MAX_PARAMETERS:
        raise ConversionError(f"the checkpoint holds {total / 1e9:.1f} G parameters, above the budget of "
                              f"{MAX_PARAMETERS / 1e9:.0f} G")
    bad = [key for key, tensor in state_dict.items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise ConversionError(
            f"{len(bad)} checkpoint tensor(s) hold NaN or infinite values ({', '.join(bad[:5])}"
            f"{', ...' if len(bad) > 5 else ''}): the checkpoint is damaged or comes from a diverged run"
        )


def unet_from_original_checkpoint(
    state_dict: Mapping[str, torch.Tensor], options: Mapping[str, Any] | None = None
):
    """Build a `SPICUNet2DModel` and fill it from an original state dict; missing/extra keys are errors.

    Tensors, keys and shapes are all checked against a model built on the meta device first, so a small
    file cannot make the converter allocate more than the weights it really holds.
    """
    from .models.unet_spic import SPICUNet2DModel

    check_checkpoint_tensors(state_dict)
    config = resolve_unet_config(state_dict, options)
    with torch.device("meta"):
        skeleton = SPICUNet2DModel(**config)
    converted = convert_original_state_dict(state_dict, skeleton.config)
    expected = skeleton.state_dict()
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ConversionError(
            f"{len(missing)} model parameter(s) not filled by the checkpoint: {', '.join(missing[:20])}"
        )
    for key, tensor in converted.items():
        if key not in expected:
            raise ConversionError(f"converted key {key} is not a model parameter")
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ConversionError(
                f"shape mismatch for {key}: checkpoint gives {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[key].shape)}; check the model options"
            )
    model = SPICUNet2DModel(**config)
    model.load_state_dict(converted, strict=True)
    return model
