"""Convert the released Gu et al. checkpoint (``checkpoints/pretrained/``) into this project's networks.

    python -m portrait_models.mask_guided.convert <official checkpoint dir> out.pth

The official code saves each network as ``<epoch>_net_<label>.pth`` (``latest_`` for the release): ``G``,
``encoder_<c>``, ``decoder_<c>`` (feature decoder), ``decoder_<c>_image`` for the five components
``left_eye, right_eye, skin, hair, mouth``, the parser ``P``, and (when training was saved) ``D`` / ``D2``.
Every tensor name and shape is listed in ``shared/design/mask_guided_official_checkpoint.md``; the renaming
below follows the layer order of each official ``nn.Sequential`` (reflection paddings and activations take
indices there; here the padding lives inside the conv and the activations hold no tensors):

* G: ``downsample_model.{1,2,4,5,7,8}`` -> ``mask_encoder.{0,1,2}.{conv,norm}``; ``model.0`` -> ``fuse_conv``;
  ``model.{1..9}.conv_block.{1,2,5,6}`` -> ``blocks.{0..8}.conv{1,2}.{conv,norm}``; ``model.{10,11,13,14}`` ->
  ``up.{0,1}.{conv,norm}``; ``bg_encoder.{1,2}`` -> ``bg_encoder.{conv,norm}``; ``bg_decoder.{0,2}`` ->
  ``bg_decoder.0`` / ``bg_decoder.1.conv``.
* encoders: ``conv.i.{conv,bn}`` -> ``encoder.blocks.i.{conv,norm}``, ``fc_mu`` / ``fc_var`` unchanged.
* decoders: ``fc.0`` -> ``fc``; ``conv.i.conv.{0,1}`` -> ``blocks.i.{conv,norm}``; the image decoder's last
  conv (after its reflection pad) -> the last block's ``conv``.
* D / D2: ``scale{k}_layer{j}.{0,1}`` -> ``discriminators.{num_D-1-k}.layers.j.{conv,norm}`` (the official
  scale index counts from the coarsest).
* P: the pix2pix U-Net's nested ``model.model.1.model.3...`` -> ``root.sub.sub...`` of :class:`Pix2PixUNet`.

The output file holds ``{"generator": state dict of MaskGuidedGenerator, "parser": ... or None,
"discriminator": ..., "discriminator2": ...}`` at the official settings; :func:`load_official_system` builds a
``MaskGuidedSystem`` from either the folder or that file.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from portrait_models.mask_guided.components import COMPONENTS

_G_FIXED = {
    "downsample_model.1": "mask_encoder.0.conv",
    "downsample_model.2": "mask_encoder.0.norm",
    "downsample_model.4": "mask_encoder.1.conv",
    "downsample_model.5": "mask_encoder.1.norm",
    "downsample_model.7": "mask_encoder.2.conv",
    "downsample_model.8": "mask_encoder.2.norm",
    "model.0": "fuse_conv",
    "bg_encoder.1": "bg_encoder.conv",
    "bg_encoder.2": "bg_encoder.norm",
    "bg_decoder.0": "bg_decoder.0",
    "bg_decoder.2": "bg_decoder.1.conv",
}
_RES_PARTS = {"1": "conv1.conv", "2": "conv1.norm", "5": "conv2.conv", "6": "conv2.norm"}


def _split(key: str) -> tuple[str, str]:
    module, _, tensor = key.rpartition(".")
    return module, tensor


def _rename(state: Mapping[str, Tensor], mapping, what: str) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        module, tensor = _split(key)
        new = mapping(module)
        if new is None:
            raise ValueError(f"{what}: unexpected official tensor {key!r}")
        out[f"{new}.{tensor}"] = value
    return out


def convert_generator_trunk(state: Mapping[str, Tensor], n_blocks: int = 9) -> dict[str, Tensor]:
    """Official ``latest_net_G.pth`` -> E_m, G_m, E_b, G_b of :class:`MaskGuidedGenerator`."""
    up = {str(n_blocks + 1): "up.0.conv", str(n_blocks + 2): "up.0.norm",
          str(n_blocks + 4): "up.1.conv", str(n_blocks + 5): "up.1.norm"}  # fmt: skip

    def mapping(module: str) -> str | None:
        if module in _G_FIXED:
            return _G_FIXED[module]
        match = re.fullmatch(r"model\.(\d+)\.conv_block\.(\d+)", module)
        if match and 1 <= int(match[1]) <= n_blocks and match[2] in _RES_PARTS:
            return f"blocks.{int(match[1]) - 1}.{_RES_PARTS[match[2]]}"
        match = re.fullmatch(r"model\.(\d+)", module)
        return up.get(match[1]) if match else None

    return _rename(state, mapping, "G")


def convert_encoder(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    def mapping(module: str) -> str | None:
        match = re.fullmatch(r"conv\.(\d+)\.(conv|bn)", module)
        if match:
            return f"encoder.blocks.{match[1]}.{'conv' if match[2] == 'conv' else 'norm'}"
        return f"encoder.{module}" if re.fullmatch(r"fc_(mu|var)\.[02]", module) else None

    return _rename(state, mapping, "encoder")


def convert_decoder(state: Mapping[str, Tensor], image: bool) -> dict[str, Tensor]:
    prefix = "image_decoder" if image else "feature_decoder"
    blocks = {int(m[1]) for k in state if (m := re.match(r"conv\.(\d+)\.conv\.", k))}
    last = max(blocks, default=-1)

    def mapping(module: str) -> str | None:
        if module == "fc.0":
            return f"{prefix}.fc"
        match = re.fullmatch(r"conv\.(\d+)\.conv\.([01])", module)
        if match:
            return f"{prefix}.blocks.{match[1]}.{'conv' if match[2] == '0' else 'norm'}"
        if image and module == f"conv.{last + 2}":  # after the reflection pad
            return f"{prefix}.blocks.{last + 1}.conv"
        return None

    return _rename(state, mapping, f"{prefix}")


def convert_discriminator(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    scales = {int(m[1]) for k in state if (m := re.match(r"scale(\d+)_layer", k))}
    num_d = max(scales) + 1

    def mapping(module: str) -> str | None:
        match = re.fullmatch(r"scale(\d+)_layer(\d+)\.([01])", module)
        if not match:
            return None
        part = "conv" if match[3] == "0" else "norm"
        return f"discriminators.{num_d - 1 - int(match[1])}.layers.{match[2]}.{part}"

    return _rename(state, mapping, "D")


def convert_parser(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official pix2pix ``UnetGenerator`` (netP) -> :class:`~portrait_models.mask_guided.networks.Pix2PixUNet`."""

    def mapping(module: str) -> str | None:
        if module == "model.model.0":
            return "root.down"
        if module == "model.model.3":
            return "root.up"
        path, rest = "root.sub", module.removeprefix("model.model.1.")
        if rest == module:
            return None
        while rest.startswith("model.3.model."):  # descend one level
            path, rest = f"{path}.sub", rest.removeprefix("model.3.")
        innermost = not any(k.startswith(_official_prefix(path) + "model.3.model.") for k in state)
        parts = {"model.1": "down", "model.3": "up", "model.4": "up_norm"} if innermost else {
            "model.1": "down", "model.2": "down_norm", "model.5": "up", "model.6": "up_norm"}  # fmt: skip
        return f"{path}.{parts[rest]}" if rest in parts else None

    return _rename(state, mapping, "P")


def _official_prefix(path: str) -> str:
    """``root.sub.sub`` -> ``model.model.1.model.3.`` (the official prefix of that U-Net level)."""
    depth = path.count(".sub")
    return "model.model.1." + "model.3." * (depth - 1)


def _load(path: Path) -> dict[str, Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


def _find(folder: Path, label: str, required: bool) -> Path | None:
    for name in (f"latest_net_{label}.pth", *sorted(p.name for p in folder.glob(f"*_net_{label}.pth"))):
        if (folder / name).is_file():
            return folder / name
    if required:
        raise FileNotFoundError(f"{folder}: no latest_net_{label}.pth (expected the official pretrained folder)")
    return None


def convert_folder(folder: str | Path) -> dict[str, dict[str, Tensor] | None]:
    """Every network found in an official checkpoint folder, renamed (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"official checkpoint folder not found: {folder}")
    generator = {f"{k}": v for k, v in convert_generator_trunk(_load(_find(folder, "G", True))).items()}
    for name in COMPONENTS:
        parts = [
            convert_encoder(_load(_find(folder, f"encoder_{name}", True))),
            convert_decoder(_load(_find(folder, f"decoder_{name}", True)), image=False),
            convert_decoder(_load(_find(folder, f"decoder_{name}_image", True)), image=True),
        ]
        for part in parts:
            generator.update({f"autoencoders.{name}.{k}": v for k, v in part.items()})
    out: dict[str, dict[str, Tensor] | None] = {"generator": generator}
    parser = _find(folder, "P", False)
    out["parser"] = convert_parser(_load(parser)) if parser else None
    for label, key in (("D", "discriminator"), ("D2", "discriminator2")):
        path = _find(folder, label, False)
        out[key] = convert_discriminator(_load(path)) if path else None
    return out


def load_official_parser(path: str | Path):
    """The official netP file as a :class:`Pix2PixUNet` (11 classes)."""
    from portrait_models.mask_guided.networks import Pix2PixUNet

    net = Pix2PixUNet(11)
    net.load_state_dict(convert_parser(_load(Path(path))), strict=True)
    return net


def load_official_system(source: str | Path):
    """A ``MaskGuidedSystem`` at the official settings holding the converted networks (folder or ``out.pth``)."""
    from portrait_models.mask_guided.module import MaskGuidedSystem
    from portrait_models.mask_guided.networks import Pix2PixUNet

    source = Path(source)
    converted = convert_folder(source) if source.is_dir() else torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(converted, Mapping) or "generator" not in converted:
        raise ValueError(f"{source}: expected the official folder or a file written by this converter")
    system = MaskGuidedSystem(image_size=256, vgg_pretrained=False, loss_weights={"vgg": 0.0})
    system.generator.load_state_dict(converted["generator"], strict=True)
    for key, module in (("discriminator", system.discriminator), ("discriminator2", system.discriminator2)):
        if converted.get(key) is not None:
            module.load_state_dict(converted[key], strict=True)
    if converted.get("parser") is not None:
        parser = Pix2PixUNet(11)
        parser.load_state_dict(converted["parser"], strict=True)
        system.attach_parser(parser)
    return system


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("folder", help="the official checkpoints/pretrained folder (latest_net_*.pth)")
    cli.add_argument("out", help="output .pth")
    args = cli.parse_args(argv)
    converted = convert_folder(args.folder)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    torch.save(converted, tmp)
    tmp.replace(args.out)
    found = ", ".join(k for k, v in converted.items() if v is not None)
    print(f"wrote {args.out} ({found})")


if __name__ == "__main__":
    main()
