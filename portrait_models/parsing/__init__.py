"""Face parsers: the official CelebAMask-HQ U-Net and zllrunning's BiSeNet, plus their Lightning system.

``UNet`` and ``BiSeNet`` are pure ``nn.Module``s taking images in ``[-1, 1]``; ``FaceParser`` trains and
evaluates either one; ``load_bisenet_checkpoint`` reads the widely used ``79999_iter.pth`` and reorders
its outputs into the official CelebAMask-HQ class order.
"""

from portrait_models.parsing.bisenet import BiSeNet, load_bisenet_checkpoint, load_resnet18_imagenet
from portrait_models.parsing.losses import OhemCELoss, ohem_cross_entropy, pixel_cross_entropy
from portrait_models.parsing.module import FaceParser
from portrait_models.parsing.unet import UNet

__all__ = [
    "BiSeNet",
    "FaceParser",
    "OhemCELoss",
    "UNet",
    "load_bisenet_checkpoint",
    "load_resnet18_imagenet",
    "ohem_cross_entropy",
    "pixel_cross_entropy",
]
