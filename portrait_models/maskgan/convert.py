"""Load official MaskGAN checkpoints (switchablenorms/CelebAMask-HQ, MaskGAN_demo) into this project's nets.

The demo releases only the generator, ``checkpoints/label2face_512p/latest_net_G.pth`` (see
:mod:`portrait_models.pretrained`, entry ``maskgan_official_G``). Its tensor names follow the demo's module
tree: the backbone is one ``nn.Sequential`` called ``model`` (``model.1`` the first conv, ``model.4/7/10/13``
the downsampling convs, ``model.16..19.conv_block.{0,1}`` the AdaIN residual blocks, ``model.20/23/26/29`` the
transposed convs, ``model.33`` the output conv: every conv is followed by a norm and an activation, which have
no tensors), ``enc_style`` the style branch with ``sft1``/``sft2``, ``enc_label`` the mask branch. The AdaIN
layers carry 16,384 unused running-statistics buffers, which are dropped. Converters for the pix2pixHD-layout
discriminator and blender state dicts (not released, but produced by the same code) are included.

Command line: ``python -m portrait_models.maskgan.convert latest_net_G.pth maskgan_dmn.pth`` writes a state
dict for :class:`~portrait_models.maskgan.networks.DenseMappingNetwork` and prints the constructor arguments
it needs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from portrait_models.maskgan.networks import DenseMappingNetwork

_BLOCK_KEY = re.compile(r"^model\.(\d+)\.conv_block\.")
_ADAIN_STAT_KEY = re.compile(r"^model\.\d+\.conv_block\.\d+\.norm\.running_(mean|var)$")


# ------------------------------------------------------------------------------------------ name maps
def _param_pair(official: str, local: str) -> dict[str, str]:
    return {f"{official}.weight": f"{local}.weight", f"{official}.bias": f"{local}.bias"}


def _trunk_key_map(n_downsample: int, n_blocks: int, local_prefix: str, block_conv: str) -> dict[str, str]:
    """Official pix2pixHD ``model.N`` names -> ``head``/``down``/``blocks``/``up``/``tail`` names.

    Indices follow the official list layout: [pad, conv, norm, act], n_downsample x [conv, norm, act], the
    residual blocks, n_downsample x [convT, norm, act], [pad, conv, act]. ``block_conv`` formats a residual
    block's k-th conv (k = 1, 2) below ``blocks.j``.
    """
    names = _param_pair("model.1", f"{local_prefix}head.conv")
    for i in range(n_downsample):
        names |= _param_pair(f"model.{4 + 3 * i}", f"{local_prefix}down.{i}.conv")
    first_block = 3 * n_downsample + 4
    for j in range(n_blocks):
        for k in (0, 1):
            names |= _param_pair(
                f"model.{first_block + j}.conv_block.{k}.conv",
                f"{local_prefix}blocks.{j}.{block_conv.format(k + 1)}",
            )
    first_up = first_block + n_blocks
    for i in range(n_downsample):
        names |= _param_pair(f"model.{first_up + 3 * i}", f"{local_prefix}up.{i}.conv")
    names |= _param_pair(f"model.{first_up + 3 * n_downsample + 1}", f"{local_prefix}tail.conv")
    return names


def _count_indexed(state_dict: Mapping[str, Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state_dict if (m := regex.match(k))})


def _trunk_depths(state_dict: Mapping[str, Tensor], what: str) -> tuple[int, int]:
    """(n_downsample, n_blocks) read off the residual-block indices of an official ``model.N`` state dict."""
    block_indices = sorted({int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))})
    if not block_indices:
        raise ValueError(f"not an official {what} state dict: no 'model.N.conv_block.*' residual-block tensors")
    first = block_indices[0]
    if (first - 4) % 3 or block_indices != list(range(first, first + len(block_indices))):
        raise ValueError(f"unexpected residual-block indices {block_indices} in the {what} state dict")
    return (first - 4) // 3, len(block_indices)


def generator_key_map(state_dict: Mapping[str, Tensor]) -> dict[str, str]:
    """Official generator tensor name -> :class:`DenseMappingNetwork` name, for the layout in the dict."""
    n_downsample, n_blocks = _trunk_depths(state_dict, "MaskGAN generator")
    names = _trunk_key_map(n_downsample, n_blocks, "", "conv{}")
    for i in range(3):
        names |= _param_pair(f"enc_style.model.{i}.conv", f"style_encoder.image_stem.{i}.conv")
        names |= _param_pair(f"enc_label.model.{i}.conv", f"style_encoder.mask_branch.stem.{i}.conv")
    for i in range(_count_indexed(state_dict, r"^enc_style\.model_middle\.(\d+)\.conv\.weight$")):
        names |= _param_pair(f"enc_style.model_middle.{i}.conv", f"style_encoder.image_middle.{i}.conv")
    # enc_label.model_last.0 is a ReLU, so its convs start at index 1.
    for i in range(_count_indexed(state_dict, r"^enc_label\.model_last\.(\d+)\.conv\.weight$")):
        names |= _param_pair(f"enc_label.model_last.{i + 1}.conv", f"style_encoder.mask_branch.deep.{i}.conv")
    names |= _param_pair("enc_style.model_last.1", "style_encoder.to_params")
    for sft in (1, 2):
        for branch in ("scale", "shift"):
            for conv in (1, 2):
                names |= _param_pair(
                    f"enc_style.sft{sft}.SFT_{branch}_conv{conv}",
                    f"style_encoder.fuse{sft}.{branch}_conv{conv}",
                )
    return names


def blender_key_map(state_dict: Mapping[str, Tensor]) -> dict[str, str]:
    """Official ``BlendGenerator`` tensor name -> :class:`AlphaBlender` name."""
    n_downsample, n_blocks = _trunk_depths(state_dict, "MaskGAN blender")
    return _trunk_key_map(n_downsample, n_blocks, "net.", "conv{}.conv")


def discriminator_key_map(state_dict: Mapping[str, Tensor]) -> dict[str, str]:
    """Official ``scale{i}_layer{j}.0`` names -> :class:`MaskGANDiscriminator` names.

    pix2pixHD applies ``scale{num_D - 1}`` to the full-resolution input, so official scale ``i`` becomes
    ``multiscale.discriminators[num_D - 1 - i]`` (full resolution first).
    """
    num_d = _count_indexed(state_dict, r"^scale(\d+)_layer\d+\.")
    num_layers = _count_indexed(state_dict, r"^scale\d+_layer(\d+)\.")
    if num_d == 0:
        raise ValueError("not an official pix2pixHD discriminator state dict: no 'scale{i}_layer{j}' tensors")
    names: dict[str, str] = {}
    for i in range(num_d):
        for j in range(num_layers):
            names |= _param_pair(f"scale{i}_layer{j}.0", f"multiscale.discriminators.{num_d - 1 - i}.layers.{j}.conv")
    return names


# ------------------------------------------------------------------------------------------ conversion
def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    """Accept a bare state dict, one under a ``state_dict`` key, or one saved from ``nn.DataParallel``."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    if not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise ValueError("expected a state dict mapping tensor names to tensors")
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _rename(
    state_dict: Mapping[str, Tensor],
    names: Mapping[str, str],
    what: str,
    ignore: re.Pattern[str] | None = None,
) -> dict[str, Tensor]:
    unexpected = [k for k in state_dict if k not in names and not (ignore is not None and ignore.match(k))]
    missing = [k for k in names if k not in state_dict]
    if unexpected or missing:
        raise ValueError(
            f"not an official {what} state dict: "
            f"missing {missing[:8]}{' …' if len(missing) > 8 else ''} "
            f"unexpected {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}"
        )
    return {names[k]: v for k, v in state_dict.items() if k in names}


def convert_official_generator(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    """Rename an official ``latest_net_G.pth`` state dict to :class:`DenseMappingNetwork` names.

    Drops the AdaIN ``running_mean``/``running_var`` buffers (never used by the official forward). Raises
    ``ValueError`` naming missing and unexpected tensors when the dict does not have the official layout.
    """
    official = _unwrap(state_dict)
    return _rename(official, generator_key_map(official), "MaskGAN generator", ignore=_ADAIN_STAT_KEY)


def convert_official_blender(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    """Rename an official ``BlendGenerator`` state dict to :class:`AlphaBlender` names."""
    official = _unwrap(state_dict)
    return _rename(official, blender_key_map(official), "MaskGAN blender")


def convert_official_discriminator(state_dict: Mapping[str, Any]) -> dict[str, Tensor]:
    """Rename an official pix2pixHD multi-scale D state dict to :class:`MaskGANDiscriminator` names."""
    official = _unwrap(state_dict)
    return _rename(official, discriminator_key_map(official), "pix2pixHD discriminator")


def infer_generator_config(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """:class:`DenseMappingNetwork` arguments implied by the shapes in an official generator state dict."""
    official = _unwrap(state_dict)
    n_downsample, n_blocks = _trunk_depths(official, "MaskGAN generator")
    try:
        head = official["model.1.weight"]
        style_first = official["enc_style.model.0.conv.weight"]
    except KeyError as err:
        raise ValueError(f"not an official MaskGAN generator state dict: missing {err}") from None
    return {
        "num_classes": int(head.shape[1]),
        "image_channels": int(style_first.shape[1]),
        "ngf": int(head.shape[0]),
        "n_downsample": n_downsample,
        "n_blocks": n_blocks,
        "style_channels": int(style_first.shape[0]),
        "style_downsample": 2 + _count_indexed(official, r"^enc_style\.model_middle\.(\d+)\.conv\.weight$"),
    }


def load_state_dict_strictly(model: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    """``model.load_state_dict(strict=True, assign=True)`` after one check that names every problem.

    Missing and unexpected names and every shape mismatch (with both shapes) are listed in one ``ValueError``
    that names ``source``. ``assign=True`` lets ``model`` be built on the meta device (no wasted init).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: model {tuple(expected[k].shape)} vs checkpoint {tuple(v.shape)}"
        for k, v in state_dict.items()
        if k in expected and expected[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit {type(model).__name__}:"]
        lines += [f"  missing: {k}" for k in missing]
        lines += [f"  unexpected: {k}" for k in unexpected]
        lines += [f"  shape mismatch: {m}" for m in mismatched]
        raise ValueError("\n".join(lines))
    model.load_state_dict(state_dict, strict=True, assign=True)


def _read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"official MaskGAN checkpoint not found: {path} (the demo's latest_net_G.pth, see "
            "portrait_models.pretrained entry 'maskgan_official_G')"
        )
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, expected a state dict")
    return _unwrap(loaded)


def load_official_generator(path: str | Path, **dmn_kwargs: Any) -> DenseMappingNetwork:
    """Build a :class:`DenseMappingNetwork` from an official ``latest_net_G.pth`` (strict).

    Architecture arguments are inferred from the tensor shapes; ``dmn_kwargs`` override them (a conflicting
    value surfaces as a shape-mismatch error naming the tensor). The network is returned in eval mode on the
    CPU.
    """
    return generator_from_official(_read_checkpoint(path), str(path), **dmn_kwargs)


def generator_from_official(
    state_dict: Mapping[str, Any], source: str = "state dict", **dmn_kwargs: Any
) -> DenseMappingNetwork:
    """:func:`load_official_generator` for a loaded official state dict (``source`` names it in errors)."""
    official = _unwrap(state_dict)
    config: dict[str, Any] = {**infer_generator_config(official), **dmn_kwargs}
    converted = convert_official_generator(official)
    with torch.device("meta"):
        model = DenseMappingNetwork(**config, init_weights=False)
    load_state_dict_strictly(model, converted, source)
    return model.eval()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m portrait_models.maskgan.convert",
        description="Convert the official MaskGAN generator (latest_net_G.pth) into a DenseMappingNetwork state dict.",
    )
    parser.add_argument("source", type=Path, help="official latest_net_G.pth")
    parser.add_argument("target", type=Path, help="where to write the converted state dict")
    args = parser.parse_args(argv)
    try:
        official = _read_checkpoint(args.source)
        model = generator_from_official(official, str(args.source))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    args.target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.target)
    config = infer_generator_config(official)
    arguments = ", ".join(f"{k}={v}" for k, v in config.items())
    print(
        f"wrote {args.target}: {sum(p.numel() for p in model.parameters()):,} parameters; load with "
        f"DenseMappingNetwork({arguments}).load_state_dict(torch.load({str(args.target)!r}))"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
