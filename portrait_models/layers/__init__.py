"""Generic GAN building blocks shared by the four papers: norms, conv blocks, pix2pixHD stacks, PatchGANs."""

from portrait_models.layers.blocks import (
    AdaINResnetBlock,
    ConvNormAct,
    GlobalGenerator,
    ResnetBlock,
    c7s1,
    downsample_stack,
    init_pix2pixhd_weights,
    make_activation,
    pix2pixhd_widths,
    upsample_stack,
)
from portrait_models.layers.discriminators import (
    MultiLevelDiscriminator,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
)
from portrait_models.layers.frozen import FrozenModule
from portrait_models.layers.norms import (
    SPADE,
    AdaptiveInstanceNorm2d,
    InstanceNorm2d,
    SFTLayer,
    adaptive_instance_norm,
    instance_norm_affine,
    iter_adain_layers,
    norm_factory,
    num_adain_params,
    split_adain_params,
)

__all__ = [
    "SPADE",
    "AdaINResnetBlock",
    "AdaptiveInstanceNorm2d",
    "ConvNormAct",
    "FrozenModule",
    "GlobalGenerator",
    "InstanceNorm2d",
    "MultiLevelDiscriminator",
    "MultiscaleDiscriminator",
    "NLayerDiscriminator",
    "ResnetBlock",
    "SFTLayer",
    "adaptive_instance_norm",
    "c7s1",
    "downsample_stack",
    "init_pix2pixhd_weights",
    "instance_norm_affine",
    "iter_adain_layers",
    "make_activation",
    "norm_factory",
    "num_adain_params",
    "pix2pixhd_widths",
    "split_adain_params",
    "upsample_stack",
]
