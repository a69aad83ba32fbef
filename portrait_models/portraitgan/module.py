"""PortraitGAN as one Lightning system (Duan, Guo, Kuo 2020, §III, Eqs. 1-10).

One generator G(I, L, c) serves both directions of a same-identity pair and both cycle passes:

    fake_B = G(I_A, M_B, c_B)     fake_A = G(I_B, M_A, c_A)      (Eq. 1, levels 1..K)
    rec_A  = G(fake_B, M_A, c_A)  rec_B  = G(fake_A, M_B, c_B)    (Eq. 9, fakes not detached)

with ``M = render_landmark_map(landmarks)`` and ``c`` one-hot code planes. Per direction (X, Y), Eq. 6:
``Σ_k [LSGAN_G(D_k(Ŷ_k)) + β·FM(D_k; Ŷ_k, P^(k-1)Y)] + γ·L1(Ŷ_1, Y)``; Eq. 10 adds ``α·L_cyc + η·L_texture``
(Gram on VGG19 relu1_1..relu5_1, full-resolution outputs, both directions) with α, β, γ, η = 2, 10, 5, 10.
Terms are summed over the two directions as Eq. 10 writes them. The discriminators (one PatchGAN per level,
one optimizer) are updated after G on the detached fakes of both directions:
``½ Σ_dir Σ_k ½[(D_k(P^(k-1)Y) - 1)² + D_k(sg Ŷ_k)²]``.

Table 1 rows are switches: ``num_levels=1`` (wo/ L_multi: no aux head, one D; FM and L1 kept),
``lambda_texture=0`` (wo/ L_texture), both (wo/ L_multi + L_texture). The single-modality base model of Eq. 4
is ``num_modalities=0, bidirectional=False, lambda_cyc=0``; with ``lambda_cyc > 0`` and
``bidirectional=False`` only the forward cycle is kept ("sufficient to incorporate only forward cycle").
Research-code extras, off by default: ``lambda_vgg`` (pix2pixHD VGG L1, weight 5 in uncon_face),
``d_update="random"`` (D on one random direction per step), ``d_condition_landmarks`` (D sees image +
landmark map, as uncon_face's mixture model).

``ema_halflife_kimg > 0`` keeps an exponential moving average of G (``portrait_models.ema.EMA``, half-life in
thousands of generated images, both directions counted) that :meth:`PortraitGAN.generate`, validation and the
sample grid use; the paper has none (off by default), the synthetic config uses one (spec §7 #33).

The learning rate is constant for ``decay_start`` units and then decays linearly to 0 over ``decay_length``
units (pix2pixHD: 100 + 100 epochs); ``schedule_unit="batch"`` counts batches instead (short synthetic runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from portrait_models.ema import EMA
from portrait_models.losses import PerceptualLoss, feature_matching_loss, lsgan_fake, lsgan_real
from portrait_models.portraitgan.landmark_map import modality_planes, render_landmark_map
from portrait_models.portraitgan.networks import (
    PortraitDiscriminator,
    PortraitGenerator,
    image_pyramid,
    texture_network,
)

DUpdate = Literal["both", "random"]
ScheduleUnit = Literal["epoch", "batch"]
G_TERMS = ("gan", "fm", "id", "cyc", "texture", "vgg", "moved")


class PortraitGAN(L.LightningModule):
    """PortraitGAN (full model by default; see the module docstring for the Table 1 switches).

    Args:
        num_modalities: n one-hot code planes (paper: 4 styles including the photo; 0 = base model).
        image_size: training side S (divisible by 2**n_downsample).
        ngf, n_downsample, n_blocks: generator sizes (paper: 64, 4, 9).
        num_levels: K supervised levels / discriminators (paper: 2; 1 = wo/ L_multi).
        ndf, n_layers_d: PatchGAN sizes (paper: 64, 3).
        lambda_cyc, lambda_fm, lambda_id, lambda_texture: α, β, γ, η of Eqs. 6 and 10.
        lambda_vgg: research-code VGG19 perceptual L1 (0: off, as in the paper).
        bidirectional: train B→A as well (the paper); False trains A→B only (Eq. 4 base model).
        texture_pretrained: ImageNet VGG19 for the texture loss (False: a seeded random VGG19, CI/synthetic).
        texture_layers: how many of relu1_1..relu5_1 the texture loss uses (paper: 5).
        texture_seed: seed of the random VGG19 when not pretrained.
        texture_calibrate: rescale that random VGG19 to unit-variance conv outputs on seeded noise (LSUV-style,
            :func:`~portrait_models.portraitgan.networks.calibrate_random_vgg`); off by default.
        texture_weights: a torchvision-format VGG19 state-dict file (``features.<i>.*``) for the texture
            network, loaded like the ImageNet file but without its digest check, e.g. the synthetic-world
            stand-in of ``python -m experiments.texture_vgg`` (None: ``texture_pretrained`` decides).
        texture_layer_weights: one weight per texture layer, ``L_texture = Σ_l w_l·‖G_l(Ŷ) - G_l(Y)‖²`` (None:
            all 1, the paper's plain sum); not in the paper, off by default.
        d_update, d_condition_landmarks: research-code options (see the module docstring).
        include_point_35: draw the lower-nose polygon through point 35 (the author's code does not).
        lr, betas, decay_start, decay_length, schedule_unit: Adam and the linear-decay schedule.
        batch_d_calls: the D step judges real and fake levels in one batched call per level (the same
            numbers, as instance norm is per sample; fewer launches).
        channels_last: NHWC memory format for the networks and images (faster convs under bf16 on GPUs).
        g_head_norm: pix2pixHD's instance norm after G's first conv, which erases the constant code planes
            (see :class:`PortraitGenerator`); off by default.
        g_skips: additive encoder-decoder skips in G (each encoder output added to the up-block output of its
            resolution; no parameters; a U-Net-style shortcut as in the research code's "mixture" G, not in
            the paper's layer list); off by default, on in the synthetic config.
        g_residual: G's level-1 output is ``tanh(atanh(I) + t)`` (a change of its input; see
            :class:`PortraitGenerator`); not in the paper, no parameters; off by default.
        lambda_moved: weight of an extra paired L1 restricted to the pixels near moved landmark lines,
            ``mean(mask · |Î_1 - Y|)`` with ``mask`` = the pixels where the source's and the target's landmark
            maps differ, dilated by ``moved_radius`` of the image side (:meth:`moved_mask`), summed over the
            directions like the other terms. Not in the paper (0: off, the default).
        ema_halflife_kimg: half-life of the generator EMA in thousands of generated images (0: no EMA, the
            paper); ``ema_rampup`` caps it at that fraction of the images seen early on (0: no ramp-up).
    """

    def __init__(
        self,
        num_modalities: int = 4,
        image_size: int = 512,
        ngf: int = 64,
        n_downsample: int = 4,
        n_blocks: int = 9,
        num_levels: int = 2,
        ndf: int = 64,
        n_layers_d: int = 3,
        lambda_cyc: float = 2.0,
        lambda_fm: float = 10.0,
        lambda_id: float = 5.0,
        lambda_texture: float = 10.0,
        lambda_vgg: float = 0.0,
        bidirectional: bool = True,
        texture_pretrained: bool = True,
        texture_layers: int = 5,
        texture_seed: int = 0,
        texture_calibrate: bool = False,
        texture_weights: str | None = None,
        texture_layer_weights: list[float] | None = None,
        d_update: str = "both",
        d_condition_landmarks: bool = False,
        include_point_35: bool = False,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        decay_start: int = 100,
        decay_length: int = 100,
        schedule_unit: str = "epoch",
        batch_d_calls: bool = False,
        channels_last: bool = False,
        g_head_norm: bool = False,
        g_skips: bool = False,
        g_residual: bool = False,
        lambda_moved: float = 0.0,
        moved_radius: float = 1 / 32,
        ema_halflife_kimg: float = 0.0,
        ema_rampup: float = 0.0,
    ) -> None:
        super().__init__()
        if d_update not in ("both", "random"):
            raise ValueError(f"d_update must be 'both' or 'random', got {d_update!r}")
        if schedule_unit not in ("epoch", "batch"):
            raise ValueError(f"schedule_unit must be 'epoch' or 'batch', got {schedule_unit!r}")
        if image_size % 2**n_downsample:
            raise ValueError(f"image_size {image_size} must be divisible by 2**n_downsample = {2**n_downsample}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = PortraitGenerator(
            num_modalities, ngf, n_downsample, n_blocks, num_levels, g_head_norm, g_skips, g_residual
        )
        self.discriminator = PortraitDiscriminator(4 if d_condition_landmarks else 3, ndf, n_layers_d, num_levels)
        self.texture = None
        if lambda_texture > 0:
            self.texture = texture_network(
                texture_pretrained and texture_weights is None, texture_layers, texture_seed, texture_calibrate,
                texture_layer_weights,
            )  # fmt: skip
            if texture_weights is not None:  # the VGG inside the frozen wrapper, loaded in place
                self.texture.vgg.module.load_torchvision_weights(texture_weights)
        self.vgg = PerceptualLoss(pretrained=texture_pretrained) if lambda_vgg > 0 else None
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        if channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.generator_ema = None
        if ema_halflife_kimg > 0:
            self.generator_ema = EMA(self.generator, ema_halflife_kimg, ema_rampup or None)
        self.last_loss_terms: dict[str, Tensor] = {}
        self.phase = "train"
        self._batch_size = 1

    # --------------------------------------------------------------------------------------- conditioning
    @property
    def loss_weights(self) -> dict[str, float]:
        hp = self.hparams
        return {
            "gan": 1.0,
            "fm": hp.lambda_fm,
            "id": hp.lambda_id,
            "cyc": hp.lambda_cyc,
            "texture": hp.lambda_texture,
            "vgg": hp.lambda_vgg,
            "moved": hp.lambda_moved,
        }

    def landmark_map(self, landmarks: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, 68, 2) pixel points -> (B, 1, H, W) map in {-1, +1} on this module's device."""
        lm = render_landmark_map(landmarks, size, include_point_35=self.hparams.include_point_35)
        return lm.to(self.device)

    def code(self, modality: Tensor, size: tuple[int, int]) -> Tensor | None:
        n = self.hparams.num_modalities
        return modality_planes(modality.to(self.device), n, size) if n else None

    @property
    def inference_generator(self) -> PortraitGenerator:
        """The generator used at inference: the EMA copy when there is one."""
        return self.generator if self.generator_ema is None else self.generator_ema.averaged

    @torch.no_grad()
    def generate(self, image: Tensor, landmarks: Tensor, modality: Tensor | None = None) -> Tensor:
        """G(I, render(landmarks), c_modality) at full resolution (aux heads skipped); images in [-1, 1]."""
        size = (image.shape[-2], image.shape[-1])
        if modality is None:
            modality = torch.zeros(image.shape[0], dtype=torch.long)
        g = self.inference_generator
        return g(image, self.landmark_map(landmarks, size), self.code(modality, size), all_levels=False)

    def conditions(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor | None]:
        """Images, landmark maps and code planes of both sides of a paired batch."""
        image_a, image_b = batch["image"], batch["image_b"]
        if self.hparams.channels_last:
            image_a, image_b = (x.contiguous(memory_format=torch.channels_last) for x in (image_a, image_b))
        size = (image_a.shape[-2], image_a.shape[-1])
        zeros = torch.zeros(image_a.shape[0], dtype=torch.long)
        return {
            "I_A": image_a,
            "I_B": image_b,
            "M_A": self.landmark_map(batch["landmarks"], size),
            "M_B": self.landmark_map(batch["landmarks_b"], size),
            "C_A": self.code(batch.get("modality", zeros), size),
            "C_B": self.code(batch.get("modality_b", zeros), size),
        }

    @staticmethod
    def _cat(*parts: Tensor | None) -> Tensor | None:
        return None if parts[0] is None else torch.cat(parts)  # type: ignore[arg-type]

    def translate(self, c: Mapping[str, Tensor | None]) -> dict[str, Any]:
        """Both directions and the cycle through the one G, each pass batched over the directions.

        Returns ``fake`` (level list, rows ``[fake_B; fake_A]``), ``target`` (``[I_B; I_A]``), ``target_map``
        (``[M_B; M_A]``), ``rec`` (``[rec_A; rec_B]``), ``source`` (``[I_A; I_B]``); with
        ``bidirectional=False`` only the A→B halves.
        """
        if self.hparams.bidirectional:
            source, target = self._cat(c["I_A"], c["I_B"]), self._cat(c["I_B"], c["I_A"])
            target_map, source_map = self._cat(c["M_B"], c["M_A"]), self._cat(c["M_A"], c["M_B"])
            target_code, source_code = self._cat(c["C_B"], c["C_A"]), self._cat(c["C_A"], c["C_B"])
        else:
            source, target, target_map, source_map = c["I_A"], c["I_B"], c["M_B"], c["M_A"]
            target_code, source_code = c["C_B"], c["C_A"]
        fake = self.generator(source, target_map, target_code)
        rec = None
        if self.hparams.lambda_cyc > 0:
            rec = self.generator(fake[0], source_map, source_code, all_levels=False)
        return {
            "fake": fake, "target": target, "target_map": target_map, "source_map": source_map, "rec": rec,
            "source": source,
        }  # fmt: skip

    def _d_inputs(self, images: list[Tensor], landmark_map: Tensor) -> list[Tensor]:
        if not self.hparams.d_condition_landmarks:
            return images
        maps = image_pyramid(landmark_map, len(images))
        return [torch.cat([x, m.to(x.dtype)], 1) for x, m in zip(images, maps, strict=True)]

    # ------------------------------------------------------------------------------------------- losses
    @property
    def num_directions(self) -> int:
        return 2 if self.hparams.bidirectional else 1

    def generator_terms(self, out: Mapping[str, Any]) -> dict[str, Tensor]:
        """Unweighted Eq. 10 terms, each summed over the directions (means over pixels and batch)."""
        n_dir = self.num_directions
        fake, target = out["fake"], out["target"]
        real_levels = image_pyramid(target, len(fake))
        fake_features = self.discriminator(self._d_inputs(fake, out["target_map"]))
        with torch.no_grad():
            real_features = self.discriminator(self._d_inputs(real_levels, out["target_map"]))
        zero = fake[0].new_zeros(()).float()
        terms = {
            "gan": n_dir * lsgan_real(fake_features),
            "fm": n_dir * feature_matching_loss(fake_features, real_features, weighting="sum"),
            "id": n_dir * F.l1_loss(fake[0].float(), target.float()),
            "cyc": zero,
            "texture": zero,
            "vgg": zero,
            "moved": zero,
        }
        if self.hparams.lambda_moved > 0:
            mask = self.moved_mask(out["source_map"], out["target_map"])
            terms["moved"] = n_dir * (mask * (fake[0].float() - target.float()).abs()).mean()
        if out["rec"] is not None:
            terms["cyc"] = n_dir * F.l1_loss(out["rec"].float(), out["source"].float())
        if self.texture is not None:
            terms["texture"] = n_dir * self.texture(fake[0], target)
        if self.vgg is not None:
            terms["vgg"] = n_dir * self.vgg(fake[0], target)
        return terms

    def moved_mask(self, source_map: Tensor, target_map: Tensor) -> Tensor:
        """(B, 1, H, W) 0/1: pixels within ``moved_radius`` (a fraction of the image side, at least 1 px,
        square neighbourhood) of a pixel where the source's and the target's landmark maps differ."""
        radius = max(1, round(self.hparams.moved_radius * min(target_map.shape[-2:])))
        changed = (source_map != target_map).float()
        return F.max_pool2d(changed, 2 * radius + 1, stride=1, padding=radius)

    def discriminator_terms(self, out: Mapping[str, Any]) -> dict[str, Tensor]:
        """D's LSGAN terms on the detached fakes, averaged over the directions (or one random direction)."""
        fake = [f.detach() for f in out["fake"]]
        target, target_map = out["target"], out["target_map"]
        real = image_pyramid(target, len(fake))
        if self.hparams.d_update == "random" and self.num_directions == 2:
            half = target.shape[0] // 2
            rows = slice(0, half) if torch.rand(()) < 0.5 else slice(half, None)
            fake, real, target_map = [f[rows] for f in fake], [r[rows] for r in real], target_map[rows]
        real_in, fake_in = self._d_inputs(real, target_map), self._d_inputs(fake, target_map)
        if self.hparams.batch_d_calls:
            joint = self.discriminator([torch.cat([r, f]) for r, f in zip(real_in, fake_in, strict=True)])
            n = real_in[0].shape[0]
            real_term = lsgan_real([level[-1][:n] for level in joint])
            fake_term = lsgan_fake([level[-1][n:] for level in joint])
        else:
            real_term = lsgan_real(self.discriminator(real_in))
            fake_term = lsgan_fake(self.discriminator(fake_in))
        return {"real": real_term, "fake": fake_term, "total": 0.5 * (real_term + fake_term)}

    # -------------------------------------------------------------------------------------------- steps
    def lr_factor(self, unit: int) -> float:
        """1 for the first ``decay_start`` units, then linear to 0 over ``decay_length`` (pix2pixHD)."""
        hp = self.hparams
        if hp.decay_length <= 0:
            return 1.0
        return max(0.0, 1.0 - max(0, unit - hp.decay_start) / hp.decay_length)

    def _set_learning_rates(self) -> None:
        unit = int(self.batches_seen) if self.hparams.schedule_unit == "batch" else int(self.current_epoch)
        lr = self.hparams.lr * self.lr_factor(unit)
        for opt in self.optimizers():
            for group in opt.param_groups:
                group["lr"] = lr

    def _log_terms(self, prefix: str, terms: Mapping[str, Tensor]) -> None:
        self.log_dict({f"train/{prefix}/{k}": v.detach() for k, v in terms.items()}, batch_size=self._batch_size)
        self.last_loss_terms.update({f"{prefix}/{k}": v.detach() for k, v in terms.items()})

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        self._set_learning_rates()
        self._batch_size = batch["image"].shape[0]
        self.last_loss_terms = {}
        conditions = self.conditions(batch)
        weights = self.loss_weights
        with self.toggled_optimizer(opt_g):
            out = self.translate(conditions)
            terms = self.generator_terms(out)
            total = sum(weights[k] * terms[k] for k in G_TERMS)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(total)
            opt_g.step()
        if self.generator_ema is not None:
            self.generator_ema.update(self.generator, out["source"].shape[0])
        self._log_terms("g", {**terms, "total": total})
        with self.toggled_optimizer(opt_d):
            d_terms = self.discriminator_terms(out)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_terms["total"])
            opt_d.step()
        self._log_terms("d", d_terms)
        self.batches_seen += 1

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        betas = tuple(hp.betas)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=hp.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr, betas=betas),
        ]

    # --------------------------------------------------------------------------------------- evaluation
    def metric_samples(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A→B translations of a paired batch: ``fake`` = G(I_A, M_B, c_B), ``real`` = I_B, ``source`` = I_A."""
        fake = self.generate(batch["image"], batch["landmarks_b"], batch.get("modality_b"))
        return {"fake": fake, "real": batch["image_b"], "source": batch["image"]}

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        samples = self.metric_samples(batch)
        fake, real = samples["fake"].float(), samples["real"].float()
        size = real.shape[0]
        # batch_size as a float: Lightning's synced mean floors an integer item count (3 items on 2 ranks -> 1)
        self.log("val/l1", F.l1_loss(fake, real), prog_bar=True, batch_size=float(size), sync_dist=True)
        self.log("val/mse", F.mse_loss((fake + 1) / 2, (real + 1) / 2), batch_size=float(size), sync_dist=True)

    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, Tensor]) -> Tensor:
        """One row per pair: I_A | M_A | I_B | M_B | Î_B | Î_B level 2 | Î_A | rec_A | rec_B | G(I_A, M_A, c_m)
        for every modality m."""
        c = self.conditions(batch)
        g = self.inference_generator
        size = tuple(c["I_A"].shape[-2:])
        fake_b_levels = g(c["I_A"], c["M_B"], c["C_B"])
        fake_b, level2 = fake_b_levels[0], fake_b_levels[-1]
        if level2.shape[-2:] != size:
            level2 = F.interpolate(level2, size=size, mode="nearest")
        fake_a = g(c["I_B"], c["M_A"], c["C_A"], all_levels=False)
        rec_a = g(fake_b, c["M_A"], c["C_A"], all_levels=False)
        rec_b = g(fake_a, c["M_B"], c["C_B"], all_levels=False)
        columns = [c["I_A"], c["M_A"].expand(-1, 3, -1, -1), c["I_B"], c["M_B"].expand(-1, 3, -1, -1)]
        columns += [fake_b, level2, fake_a, rec_a, rec_b]
        b = c["I_A"].shape[0]
        for m in range(max(1, self.hparams.num_modalities)):
            columns.append(self.generate(c["I_A"], batch["landmarks"], torch.full((b,), m, dtype=torch.long)))
        cells = torch.stack([x.float() for x in columns], dim=1).flatten(0, 1)
        return make_grid(((cells + 1) / 2).clamp(0, 1), nrow=len(columns), padding=1)
