"""Gu et al. (CVPR 2019) as one Lightning system: three optimizers, Eq. 1–9, the "(1+1)" schedule.

Paper: Gu, Bao, Yang, Chen, Wen, Yuan, "Mask-Guided Portrait Editing with Conditional GANs". Every
iteration (as the released code runs it, specs/mask_guided.md §3.2):

1. masks: the eyes and the mouth of the label m grow ×``grow_factor`` about their centres (official
   ``append_region``); the grown label m̃ feeds E_m, the discriminators, the region masks and the
   background; the original m gives the centres and the parsing-loss target;
2. the five component crops are encoded once (z = μ + ε·σ) and decoded to images (Eq. 1) and features;
3. **reconstruction** (paired) path: each face from its own features; **transfer** (unpaired) path: the
   features of sample π(b) (``randperm`` of the batch; under DDP of the global batch, the sources' features
   gathered with their gradient, so W processes train as one) placed at sample b's centres, with b's mask
   and background;
4. one step of the generator optimizer ``g`` (autoencoders, E_m, G_m, E_b, G_b), then of ``d`` (D, on the
   reconstruction) and ``d2`` (D2, on the transfer). D2 and the terms of the transfer path run on every
   iteration; the reconstruction terms and D's step only when ``a_t = 1``, on every other iteration, from
   the system's own counter (a buffer, so resuming keeps the parity). The official code still steps D's
   Adam on a zeroed loss at ``a_t = 0``; here the step is skipped (spec Q6).

Loss terms (logged unweighted as ``train/g/<term>``, combined with ``loss_weights``; the presets):

============== ============================================================ ========= ======= ======
term           value                                                        official  paper   paired
============== ============================================================ ========= ======= ======
local          Σ_i MSE(decoded_i·mask_i, crop_i), Eq. 1 (mouth/skin/hair     5000      10      no
               masked, eyes not)
global         MSE(y_R, x), Eq. 2                                           40        1       yes
global_regions Σ_k μ_k MSE(M_k·y_R, M_k·x), μ = 10, 10, 5, 5, 10            4         0       yes
vgg            masked VGG19 L1 (code only), layer w 1/4, 1/4, 1/4, 1/8, 1/8  30        0       yes
adv            −log D(y_R, m̃), Eq. 4, summed over the 2 scales              1         1       yes
adv_transfer   −log D2(y_T, m̃), Eq. 4                                       1         1       no
feat           Σ_scales L1 on D's penultimate features, Eq. 5               5         10      yes
parsing        CE(P_F(y_T), m), Eq. 8 (official class weights)               100       1       no
parsing_recon  CE(P_F(y_R), m) (the paper applies L_GP to both paths)       0         1       yes
kl             Σ_i KL(q(z_i) ‖ N(0, I)), computed, not trained (official)   0         0       no
============== ============================================================ ========= ======= ======

``official`` (the default) reproduces the released ``train.py`` multipliers, with the per-GPU batch quirk
of ``L2_image`` folded into the constant 4 (spec Q1); ``paper`` is Eq. 9 with λ = {10, 1, 1, 1} and λ_FM =
10 (the paper gives none). The parsing loss uses a frozen face parser P_F (``parser_checkpoint``: a
``FaceParser`` checkpoint with 11 classes, or the official ``latest_net_P.pth``); it is wrapped in
``FrozenModule``: eval mode, no gradient to its weights, in no optimizer and not in checkpoints, but
gradients flow through it into the generator. Without a parser the parsing terms are 0 (logged once).

Ablations (Table 1, ``ablation``): ``full``; ``local_paste`` (setting 2: local autoencoders, the target
background pasted, no background fusion); ``global_paste`` (setting 1: one global autoencoder of the whole
foreground, background pasted, losses L_global, L_GP, L_GD only). Table 2: ``loss_weights: {parsing: 0}``
(and ``parsing_recon: 0``) trains without the parsing loss.

Learning rate: Adam ``lr``, betas (0.5, 0.999) for the three optimizers; constant for
``lr_constant_epochs`` epochs, then linear to 0 over ``lr_decay_epochs`` (official 10 + 45).

Speed options (off by default; ``experiments.bench_mask_guided`` times them): ``adam_fused`` (one fused Adam
kernel), ``log_paired_terms_every_step=False`` (unpaired iterations skip the logged-only reconstruction),
``channels_last`` (CPU, oneDNN) and ``batch_paths`` (GPU: both paths through G_m as one batch).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import make_grid

from portrait_models.checkpoints import keep_state_layout
from portrait_models.distributed import indexed_rows, rank_rows
from portrait_models.layers.frozen import FrozenModule
from portrait_models.losses import vanilla_fake, vanilla_real
from portrait_models.losses.kl import kl_normal_standard
from portrait_models.losses.perceptual import VGG19_RELU_X_1, VGG19Features
from portrait_models.mask_guided.components import (
    COMPONENTS,
    check_image_size,
    component_centres,
    component_mask,
    crop_components,
    crop_masks,
    grow_components,
    onehot_labels,
)
from portrait_models.mask_guided.networks import Codes, MaskGuidedDiscriminator, MaskGuidedGenerator

log = logging.getLogger(__name__)

LOSS_PRESETS: dict[str, dict[str, float]] = {
    "official": {
        "local": 5000.0,
        "global": 40.0,
        "global_regions": 4.0,
        "vgg": 30.0,
        "adv": 1.0,
        "adv_transfer": 1.0,
        "feat": 5.0,
        "parsing": 100.0,
        "parsing_recon": 0.0,
        "kl": 0.0,
    },
    "paper": {
        "local": 10.0,
        "global": 1.0,
        "global_regions": 0.0,
        "vgg": 0.0,
        "adv": 1.0,
        "adv_transfer": 1.0,
        "feat": 10.0,
        "parsing": 1.0,
        "parsing_recon": 1.0,
        "kl": 0.0,
    },
}
#: Terms of the reconstruction (paired) path, gated by a_t.
PAIRED_TERMS = ("global", "global_regions", "vgg", "adv", "feat", "parsing_recon")
#: Official class weights of the parsing loss, Helen classes 0..10.
OFFICIAL_PARSING_CLASS_WEIGHTS = (0.2, 1.0, 5.0, 5.0, 5.0, 5.0, 3.0, 8.0, 8.0, 8.0, 1.0)
#: Region weights μ_k of L2_image and the masked VGG loss, in COMPONENTS order (le, re, skin, hair, mouth).
REGION_WEIGHTS = {"left_eye": 10.0, "right_eye": 10.0, "skin": 5.0, "hair": 5.0, "mouth": 10.0}
VGG_LAYER_WEIGHTS = (0.25, 0.25, 0.25, 0.125, 0.125)


def resolve_loss_weights(preset: str, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The preset's weights with ``overrides`` applied (unknown names raise, listing the valid ones)."""
    if preset not in LOSS_PRESETS:
        raise ValueError(f"loss_preset must be one of {', '.join(LOSS_PRESETS)}, got {preset!r}")
    weights = dict(LOSS_PRESETS[preset])
    for name, value in (overrides or {}).items():
        if name not in weights:
            raise ValueError(f"unknown loss term {name!r} in loss_weights; expected one of {', '.join(weights)}")
        weights[name] = float(value)
    return weights


def official_lr_factor(epoch: int, constant_epochs: int = 10, decay_epochs: int = 45) -> float:
    """LR multiplier of 0-based ``epoch``: 1 for the first ``constant_epochs + 1`` epochs, then
    ``(constant + decay + 1 − e) / decay`` for the 1-based epoch e, reaching 0 after the last epoch."""
    if decay_epochs <= 0:
        return 1.0
    e = epoch + 1
    return max(0.0, min(1.0, (constant_epochs + decay_epochs + 1 - e) / decay_epochs))


def pairing_permutation(batch: int, kind: str, generator: torch.Generator | None = None) -> Tensor:
    """Source index π(b) for each target b: ``randperm`` (official) or ``derangement`` (a random non-zero
    cyclic shift, so no sample is its own source when ``batch > 1``)."""
    if kind == "randperm":
        return torch.randperm(batch, generator=generator)
    if kind == "derangement":
        if batch == 1:
            return torch.zeros(1, dtype=torch.long)
        shift = int(torch.randint(1, batch, (1,), generator=generator))
        return (torch.arange(batch) + shift) % batch
    raise ValueError(f"pairing must be 'randperm' or 'derangement', got {kind!r}")


def local_reconstruction_loss(
    decoded: Mapping[str, Tensor], crops: Mapping[str, Tensor], masks: Mapping[str, Tensor | None]
) -> Tensor:
    """Eq. 1 as coded: Σ_i MSE-mean(decoded_i · mask_i, crop_i) (eye crops unmasked)."""
    terms = []
    for name, crop in crops.items():
        image, mask = decoded[name], masks.get(name)
        terms.append(F.mse_loss((image if mask is None else image * mask).float(), crop.float()))
    return torch.stack(terms).sum()


def region_reconstruction_loss(fake: Tensor, real: Tensor, masks: Mapping[str, Tensor]) -> Tensor:
    """The region part of the official ``L2_image``: Σ_k μ_k MSE(M_k·fake, M_k·real)."""
    return torch.stack(
        [w * F.mse_loss((fake * masks[k]).float(), (real * masks[k]).float()) for k, w in REGION_WEIGHTS.items()]
    ).sum()


def masked_vgg_loss(fake_features: list[Tensor], real_features: list[Tensor], masks: Mapping[str, Tensor]) -> Tensor:
    """Official masked VGG loss: Σ_l w_l Σ_k μ_k L1(φ_l(fake)·M_k^(l), φ_l(real)·M_k^(l)), M^(l) max-pooled
    ``l − 1`` times to each layer's resolution.

    The masks are 0/1, so ``|f·M_k − r·M_k| = |f − r|·M_k`` and each level's five L1 means are one mean of
    ``|f − r|`` times the one-channel map ``Σ_k μ_k M_k``: the same sum (up to float reassociation) with one
    pass over each feature map instead of five (``tests/test_mask_guided_speed_options.py`` checks it against the
    per-region form)."""
    terms = []
    pooled = dict(masks)
    for level, (w, f, r) in enumerate(zip(VGG_LAYER_WEIGHTS, fake_features, real_features, strict=False)):
        if level > 0:
            pooled = {k: F.max_pool2d(m, 2) for k, m in pooled.items()}
        weight_map = sum(mu * pooled[k].float() for k, mu in REGION_WEIGHTS.items())
        terms.append(w * ((f.float() - r.detach().float()).abs() * weight_map).mean())
    return torch.stack(terms).sum()


def penultimate_feature_matching(fake: list[list[Tensor]], real: list[list[Tensor]]) -> Tensor:
    """Σ_scales L1(fake penultimate, real penultimate) (official FM: ``result[-2:]`` only)."""
    return torch.stack(
        [F.l1_loss(f[-2].float(), r[-2].detach().float()) for f, r in zip(fake, real, strict=True)]
    ).sum()


def parser_logits(parser: nn.Module, image: Tensor) -> Tensor:
    out = parser(image)
    return out[0] if isinstance(out, (tuple, list)) else out


def load_parser(path: str | Path, num_classes: int = 11) -> nn.Module:
    """The frozen parser's network: a ``FaceParser`` Lightning checkpoint, or an official ``latest_net_P.pth``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parser checkpoint not found: {path} (a FaceParser .ckpt or latest_net_P.pth)")
    if path.suffix == ".ckpt":
        from portrait_models.parsing import FaceParser

        parser = FaceParser.load_from_checkpoint(path, map_location="cpu")
        if parser.hparams.num_classes != num_classes:
            raise ValueError(f"{path} is a {parser.hparams.num_classes}-class parser; expected {num_classes} (Helen)")
        return parser.net
    from portrait_models.mask_guided.convert import load_official_parser

    return load_official_parser(path)


class MaskGuidedSystem(L.LightningModule):
    """Mask-guided portrait editing (Gu et al. 2019), see the module docstring.

    Args (official settings are the defaults; tiny ones make CPU tests):
        image_size: S, a power of two >= 64. ngf: E_m / G_m / background width (mask feature 4·ngf).
        ae_width, latent_dim, fc_hidden, feat_channels: component autoencoder widths (official 64, 512,
            1024, 256). n_res_blocks: G_m residual blocks (9). ndf: discriminator width.
        loss_preset: ``official`` or ``paper``; loss_weights: per-term overrides.
        parsing_class_weights: the parsing loss's class weights (None: official ones under ``official``,
            uniform under ``paper``).
        grow_factor: label growth of eyes and mouth (1.0 disables). pairing: ``randperm`` | ``derangement``.
        ablation: ``full`` | ``local_paste`` | ``global_paste`` (Table 1). bg_mask_input: mask the image before
            E_b (the paper's order) instead of after (the code's).
        parser_checkpoint: frozen P_F weights (see :func:`load_parser`); None turns the parsing loss off.
        vgg_pretrained: ImageNet VGG19 from the weights cache for the masked VGG term (built only when its
            weight is > 0); False uses a fixed random VGG19 (tests).
        batch_paths: on paired iterations run the reconstruction and transfer paths through G_m as one batch
            of 2B (faster on a GPU; BatchNorm then normalises over both paths, the official code runs them
            separately, so it is off by default).
        channels_last: keep the convolution weights and the batch in the channels-last memory format (the
            same numbers up to float rounding; measured 9% less CPU time per generator step on a CPU with
            oneDNN at the bench's 64² setting, see ``experiments.bench_mask_guided``).
        adam_fused: PyTorch's fused Adam (one vectorised kernel per step, CPU and CUDA) for the three
            optimizers instead of the per-tensor loop: the same update up to float reassociation. On a CPU the
            generator's step over its 228 M parameters at 256² took 0.24 s instead of 1.30 s of CPU time.
        log_paired_terms_every_step: on unpaired iterations (a_t = 0) also render the reconstruction y_R
            without a graph and compute the paired terms (weight 0 there) so that every ``train/g/<term>`` is
            logged every step (the default). False computes them on paired iterations only: no y_R, no D
            forwards and no VGG on unpaired iterations, the same losses, gradients and updates (about 215
            GFLOP less per unpaired iteration at 256², 28% of it). One difference: G's BatchNorm running
            statistics (used in eval mode) then see only the transfer batch on those iterations, not both
            paths (the released code runs both, with a graph, every iteration).
    """

    def __init__(
        self,
        image_size: int = 256,
        num_classes: int = 11,
        ngf: int = 64,
        ae_width: int = 64,
        latent_dim: int = 512,
        fc_hidden: int = 1024,
        feat_channels: int = 256,
        n_res_blocks: int = 9,
        ndf: int = 64,
        n_layers_d: int = 3,
        num_d: int = 2,
        loss_preset: str = "official",
        loss_weights: dict[str, float] | None = None,
        parsing_class_weights: list[float] | None = None,
        grow_factor: float = 1.1,
        pairing: str = "randperm",
        ablation: str = "full",
        bg_mask_input: bool = False,
        parser_checkpoint: str | None = None,
        vgg_pretrained: bool = True,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_constant_epochs: int = 10,
        lr_decay_epochs: int = 45,
        batch_paths: bool = False,
        channels_last: bool = False,
        adam_fused: bool = False,
        log_paired_terms_every_step: bool = True,
    ) -> None:
        super().__init__()
        check_image_size(image_size)
        if num_classes != 11:
            raise ValueError(f"Gu et al.'s components are defined on Helen's 11 labels; got num_classes={num_classes}")
        pairing_permutation(2, pairing)  # validates the name
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.weights = resolve_loss_weights(loss_preset, loss_weights)
        if ablation == "global_paste":
            self.weights["local"] = 0.0  # setting 1 trains with L_global, L_GP and L_GD only (paper §4.1)
        if parsing_class_weights is None:
            parsing_class_weights = list(OFFICIAL_PARSING_CLASS_WEIGHTS) if loss_preset == "official" else [1.0] * 11
        if len(parsing_class_weights) != num_classes:
            raise ValueError(f"parsing_class_weights needs {num_classes} values, got {len(parsing_class_weights)}")
        self.register_buffer("parsing_class_weights", torch.tensor(parsing_class_weights), persistent=False)
        self.generator = MaskGuidedGenerator(
            image_size, num_classes, ngf, ae_width, latent_dim, fc_hidden, feat_channels, n_res_blocks,
            ablation, bg_mask_input,  # type: ignore[arg-type]
        )  # fmt: skip
        self.discriminator = MaskGuidedDiscriminator(num_classes, ndf, n_layers_d, num_d)
        self.discriminator2 = MaskGuidedDiscriminator(num_classes, ndf, n_layers_d, num_d)
        self.vgg = FrozenModule(VGG19Features(VGG19_RELU_X_1, vgg_pretrained)) if self.weights["vgg"] > 0 else None
        self.parser: FrozenModule | None = None
        if parser_checkpoint is not None:
            self.attach_parser(load_parser(parser_checkpoint, num_classes))
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))
        self.last_loss_terms: dict[str, Tensor] = {}
        self.phase = "paired"
        self._warned_no_parser = False

    # ------------------------------------------------------------------------------------------ parts
    def attach_parser(self, net: nn.Module) -> None:
        """Use ``net`` (images -> 11-class logits) as the frozen face parser P_F."""
        self.parser = FrozenModule(net)

    @property
    def paired_step(self) -> bool:
        """a_t of the (1+1) schedule: the reconstruction terms and D's step run when the counter is even."""
        return int(self.iterations) % 2 == 0

    def prepare(self, image: Tensor, label: Tensor) -> dict[str, Any]:
        """Masks, centres and crops of a batch (``label`` is the original m; see the module docstring)."""
        if image.shape[-1] != self.hparams.image_size or label.shape[-2:] != image.shape[-2:]:
            raise ValueError(
                f"expected {self.hparams.image_size}px images and labels, got {tuple(image.shape)} and "
                f"{tuple(label.shape)}"
            )
        centres = component_centres(label).centres
        grown = grow_components(label, centres, self.hparams.grow_factor)
        background = component_mask(grown, "background").to(image.dtype)
        if self.hparams.ablation == "global_paste":
            crops = {"face": image * (1 - background)}
            masks = {"face": 1 - background}
        else:
            crops = crop_components(image, grown, centres)
            masks = crop_masks(grown, centres)
        onehot = onehot_labels(grown, self.hparams.num_classes, image.dtype)
        return {
            "label": label,
            "grown": grown,
            "centres": centres,
            "onehot": onehot.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else onehot,
            "background": background,
            "regions": {k: component_mask(grown, k).to(image.dtype) for k in COMPONENTS},
            "crops": crops,
            "crop_masks": masks,
        }

    def encode(self, prepared: Mapping[str, Any], sample: bool) -> dict[str, Codes]:
        return self.generator.encode(prepared["crops"], sample)

    def forward_paths(
        self, image: Tensor, prepared: Mapping[str, Any], codes: Mapping[str, Codes], perm: Tensor, paired: bool = True
    ) -> dict[str, Tensor]:
        """Decoded crops, the reconstruction ``y_R`` (when ``paired``) and the transfer ``y_T`` (features of
        ``perm[b]`` at b's centres, mask and background; ``perm`` indexes the global batch under DDP)."""
        g = self.generator
        z = {k: c.z for k, c in codes.items()}
        features = g.decode_features(z)
        out = {"decoded": g.decode_images(z)}
        mask_feature = g.mask_encoder(prepared["onehot"])
        bg_feature = g.background_features(image, prepared["background"]) if g.ablation == "full" else None
        centres, background = prepared["centres"], prepared["background"]
        transfer = {k: indexed_rows(f, perm) for k, f in features.items()}  # DDP: π over the global batch
        if paired and self.hparams.batch_paths:  # one G_m call on 2B samples (BN statistics over both paths)
            both = {k: torch.cat([transfer[k], features[k]]) for k in features}
            two = lambda t: None if t is None else torch.cat([t, t])  # noqa: E731
            fused = g.fuse(both, two(centres), two(mask_feature))
            out["transfer"], out["recon"] = g.render(fused, two(image), two(background), two(bg_feature)).chunk(2)
            return out
        out["transfer"] = g.render(g.fuse(transfer, centres, mask_feature), image, background, bg_feature)
        if paired or self.hparams.log_paired_terms_every_step:
            with torch.set_grad_enabled(paired and torch.is_grad_enabled()):
                out["recon"] = g.render(g.fuse(features, centres, mask_feature), image, background, bg_feature)
        return out

    def parsing_loss(self, image: Tensor, label: Tensor) -> Tensor:
        if self.parser is None:
            if not self._warned_no_parser:
                log.warning("MaskGuidedSystem has no parser_checkpoint: the parsing loss L_GP is 0")
                self._warned_no_parser = True
            return image.new_zeros(())
        logits = parser_logits(self.parser, image).float()
        return F.cross_entropy(logits, label, weight=self.parsing_class_weights.to(logits.device))

    def generator_terms(
        self,
        image: Tensor,
        prepared: Mapping[str, Any],
        codes: Mapping[str, Codes],
        out: Mapping[str, Tensor],
        paired: bool,
    ) -> dict[str, Tensor]:
        """Every loss term of the generator (unweighted); the paired ones without graph when not ``paired``, and
        not at all when ``out`` has no reconstruction (``log_paired_terms_every_step=False``)."""
        onehot, label = prepared["onehot"], prepared["label"]
        y_r, y_t = out.get("recon"), out["transfer"]
        terms = {
            "local": local_reconstruction_loss(out["decoded"], prepared["crops"], prepared["crop_masks"]),
            "adv_transfer": vanilla_real(self.discriminator2(onehot, y_t)),
            "parsing": self.parsing_loss(y_t, label),
            "kl": torch.stack([kl_normal_standard(c.mu.float(), c.logvar.float()) for c in codes.values()]).sum(),
        }
        if y_r is None:
            if paired:
                raise ValueError("a paired iteration needs the reconstruction out['recon']")
            return terms
        with torch.set_grad_enabled(paired and torch.is_grad_enabled()):
            fake = self.discriminator(onehot, y_r)
            with torch.no_grad():
                real = self.discriminator(onehot, image)
            terms["adv"] = vanilla_real(fake)
            terms["feat"] = penultimate_feature_matching(fake, real)
            terms["global"] = F.mse_loss(y_r.float(), image.float())
            terms["global_regions"] = region_reconstruction_loss(y_r, image, prepared["regions"])
            terms["parsing_recon"] = (
                self.parsing_loss(y_r, label) if self.weights["parsing_recon"] > 0 else y_r.new_zeros(())
            )
            if self.vgg is not None:
                with torch.no_grad():
                    real_vgg = self.vgg(image)
                terms["vgg"] = masked_vgg_loss(self.vgg(y_r), real_vgg, prepared["regions"])
            else:
                terms["vgg"] = y_r.new_zeros(())
        return terms

    def total_generator_loss(self, terms: Mapping[str, Tensor], paired: bool) -> Tensor:
        total = terms["local"].new_zeros(())
        for name, value in terms.items():
            weight = self.weights[name]
            if weight == 0 or (name in PAIRED_TERMS and not paired):
                continue
            total = total + weight * value
        return total

    # ------------------------------------------------------------------------------------------ training
    def _log_terms(self, prefix: str, terms: Mapping[str, Tensor], batch_size: int) -> None:
        values = {f"train/{prefix}/{k}": v.detach().float() for k, v in terms.items()}
        self.log_dict(values, batch_size=batch_size)
        self.last_loss_terms.update({f"{prefix}/{k}": v.detach() for k, v in terms.items()})

    def _discriminator_step(self, opt: Any, disc: nn.Module, onehot: Tensor, real: Tensor, fake: Tensor) -> dict:
        with self.toggled_optimizer(opt):
            real_term = vanilla_real(disc(onehot, real))
            fake_term = vanilla_fake(disc(onehot, fake.detach()))
            loss = 0.5 * (real_term + fake_term)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
        return {"real": real_term, "fake": fake_term, "total": loss}

    def _set_learning_rates(self) -> None:
        hp = self.hparams
        factor = official_lr_factor(self.current_epoch, hp.lr_constant_epochs, hp.lr_decay_epochs)
        for opt in self.optimizers():
            for group in opt.param_groups:
                group["lr"] = hp.lr * factor

    def setup(self, stage: str) -> None:
        if self.hparams.channels_last:  # before the optimizers exist; parameters keep their identity
            self.to(memory_format=torch.channels_last)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        opt_g, opt_d, opt_d2 = self.optimizers()
        self._set_learning_rates()
        image, label = batch["image"], batch["label"]
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        batch_size = image.shape[0]
        paired = self.paired_step
        self.phase = "paired" if paired else "unpaired"
        self.last_loss_terms = {}
        # π drawn over the global batch (sources may live on other ranks, whose features are gathered)
        perm = rank_rows(lambda n: pairing_permutation(n, self.hparams.pairing), batch_size).to(image.device)
        with self.toggled_optimizer(opt_g):
            prepared = self.prepare(image, label)
            codes = self.encode(prepared, sample=True)
            out = self.forward_paths(image, prepared, codes, perm, paired)
            terms = self.generator_terms(image, prepared, codes, out, paired)
            total = self.total_generator_loss(terms, paired)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(total)
            opt_g.step()
        self._log_terms("g", {**terms, "total": total}, batch_size)
        onehot = prepared["onehot"]
        if paired:
            d_terms = self._discriminator_step(opt_d, self.discriminator, onehot, image, out["recon"])
            self._log_terms("d", d_terms, batch_size)
        d2_terms = self._discriminator_step(opt_d2, self.discriminator2, onehot, image, out["transfer"])
        self._log_terms("d2", d2_terms, batch_size)
        self.log("train/paired", float(paired), batch_size=batch_size)
        self.iterations += 1

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        betas = tuple(hp.betas)
        fused = True if hp.adam_fused else None
        return [  # moments re-laid out like their parameters on load (a checkpoint of the other layout)
            keep_state_layout(torch.optim.Adam(net.parameters(), lr=hp.lr, betas=betas, fused=fused))
            for net in (self.generator, self.discriminator, self.discriminator2)
        ]

    # ------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def component_features(self, image: Tensor, label: Tensor) -> dict[str, Tensor]:
        """Decoded feature tensors Dfeat_i(μ_i) of each face (official ``encode_tensor``), in eval mode."""
        prepared = self.prepare(image, label)
        z = {k: c.z for k, c in self.encode(prepared, sample=False).items()}
        return self.generator.decode_features(z)

    @torch.no_grad()
    def generate(self, features: Mapping[str, Tensor], target_image: Tensor, target_label: Tensor) -> Tensor:
        """Render component ``features`` into the target's (ungrown) label and background."""
        centres = component_centres(target_label).centres
        grown = grow_components(target_label, centres, self.hparams.grow_factor)
        return self.generator.generate(dict(features), target_image, grown, centres)

    @torch.no_grad()
    def reconstruct(self, image: Tensor, label: Tensor) -> Tensor:
        return self.generate(self.component_features(image, label), image, label)

    @torch.no_grad()
    def swap(self, source_image: Tensor, source_label: Tensor, target_image: Tensor, target_label: Tensor) -> Tensor:
        """G(x^s, m^s, x^t, m^t): the source's components in the target's mask and background (face swap+)."""
        return self.generate(self.component_features(source_image, source_label), target_image, target_label)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        image, label = batch["image"], batch["label"]
        recon = self.reconstruct(image, label)
        size = image.shape[0]
        # batch_size as a float: Lightning's synced mean floors an integer item count (3 items on 2 ranks -> 1)
        self.log("val/recon_mse", F.mse_loss(recon, image), prog_bar=True, batch_size=float(size), sync_dist=True)
        if self.parser is not None and size > 1:
            swapped = self.swap(image.roll(1, 0), label.roll(1, 0), image, label)
            accuracy = (parser_logits(self.parser, swapped).argmax(1) == label).float().mean()
            self.log("val/parse_acc_train_parser", accuracy, batch_size=float(size), sync_dist=True)

    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Rows: target mask | target | source | output (source into the target) | reconstruction | the
        target with the source's hair only (component transfer)."""
        from portrait_models.parsing.module import palette_for

        image, label = batch["image"], batch["label"]
        source, source_label = image.roll(1, 0), label.roll(1, 0)
        palette = torch.as_tensor(palette_for(11), device=image.device, dtype=torch.float32) / 255.0
        target_features = self.component_features(image, label)
        source_features = self.component_features(source, source_label)
        hair = dict(target_features)
        if "hair" in hair:
            hair["hair"] = source_features["hair"]
        rows = [
            palette[label].permute(0, 3, 1, 2),
            (image + 1) / 2,
            (source + 1) / 2,
            (self.generate(source_features, image, label) + 1) / 2,
            (self.generate(target_features, image, label) + 1) / 2,
            (self.generate(hair, image, label) + 1) / 2,
        ]
        return make_grid(torch.cat([r.float().clamp(0, 1) for r in rows]), nrow=image.shape[0], padding=1)
