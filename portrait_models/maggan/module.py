"""MagGAN as one Lightning system: WGAN-GP attribute editing with mask-guided conditioning and reconstruction.

Paper: Wei et al., "MagGAN: High-Resolution Face Attribute Editing with Mask-Guided Generative Adversarial
Network", ACCV 2020. Built on STGAN (Liu et al. 2019), whose code supplies every training setting the paper
leaves open (spec ``maggan.md`` §4):

* every batch is one critic step (eq. 14: per level WGAN loss + λ_gp·GP + attribute BCE on real images,
  averaged over the levels); every ``n_critic``-th batch (5) is also a generator step with eq. (11):
  ``L_G = L_gan + λ1·L_rec + λ2·L_cls + λ3·L_mre`` (λ1 = 100, λ2 = 10, λ3 = 100 by default);
* targets are the batch's own attribute vectors shuffled (``att_diff = att_t − att_s``), no conflict check;
* Adam(2e-4, β = (0.5, 0.999)) for G and D; the learning rate drops ×0.1 every ``lr_decay_every`` generator
  steps (STGAN: 100 of its 200 epochs); the run stops itself after ``max_g_steps`` generator steps;
* ``reconstruction="cycle"`` replaces ``L_rec`` by ``‖G(G(x, d), −d) − x‖₁`` (Table 3 ii);
* bf16 autocast on GPU comes from the Trainer (``precision="bf16-mixed"``); the gradient penalty runs with
  autocast off, in fp32 (double backward).

Batches need ``image``, ``attributes`` (B, 13) in {0, 1} (``labels.EDIT_ATTRIBUTES`` order) and
``soft_masks`` (B, 19, h, w) of the source image (any h, w: resized inside).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid

from datamodules.labels import EDIT_ATTRIBUTES
from portrait_models.maggan.attributes import single_flip_changes
from portrait_models.maggan.losses import (
    attribute_difference,
    boosted_targets,
    critic_terms,
    generator_adversarial_terms,
    mask_guided_reconstruction_loss,
    multilevel_gradient_penalty,
    reconstruction_loss,
    shuffled_targets,
)
from portrait_models.maggan.networks import MagGANGenerator, MultiLevelDiscriminator

# Table 3 of the paper (256², one D): the switches of each row. ``table3_row`` applies one; the remaining
# constructor arguments keep their values. λ3 > 0 rows use the constructor's ``lambda_mre`` (default 100).
TABLE3_ROWS: dict[str, dict[str, Any]] = {
    "i": {"conditioning": "replicated", "decoder": "bn_concat", "mre": False, "reconstruction": "rec"},  # STGAN
    "ii": {"conditioning": "replicated", "decoder": "bn_concat", "mre": False, "reconstruction": "cycle"},
    "iii": {"conditioning": "replicated", "decoder": "bn_concat", "mre": True, "reconstruction": "rec"},
    "iv": {"conditioning": "mask", "decoder": "spade", "mre": False, "reconstruction": "rec"},  # w/o L_mre
    "v": {"conditioning": "mask", "decoder": "bn_concat", "mre": True, "reconstruction": "rec"},  # w/o SP
    "vi": {"conditioning": "mask", "decoder": "spade", "mre": True, "reconstruction": "rec"},  # MagGAN
    "vii": {"conditioning": "mask", "decoder": "spade", "mre": True, "reconstruction": "rec", "seg_branch": True},
}


class MagGAN(L.LightningModule):
    """MagGAN and every Table 3 variant, selected by constructor switches (paper 256² settings by default).

    Table 3 rows: (i) STGAN ``conditioning=replicated decoder=bn_concat lambda_mre=0``; (ii) + ``reconstruction=
    cycle``; (iii) STGAN w/ L_mre: ``lambda_mre=100``; (iv) ``conditioning=mask decoder=spade lambda_mre=0``;
    (v) ``decoder=bn_concat``; (vi) MagGAN (defaults); (vii) ``seg_branch=true``.

    Args:
        image_size: output side; the generator widths/depth and the D levels are explicit arguments (configs
            set them with the scaling rule of ``networks.generator_settings`` / ``discriminator_settings``).
        enc_dim, dec_dim, num_layers, max_dim, shortcut_layers, inject_layers, conditioning, decoder,
            spade_hidden, spade_norm, blend, seg_branch: :class:`~portrait_models.maggan.networks.MagGANGenerator`.
        d_levels, d_level_size, dis_dim, dis_layers, dis_max_dim, dis_fc_dim: the multi-level D (1 level at the
            image size = STGAN's single D).
        reconstruction: ``"rec"`` (eq. 6) or ``"cycle"``.
        lambda_rec, lambda_cls, lambda_mre, lambda_gp, lambda_seg: loss weights (eq. 11, GP, seg CE).
        n_critic: critic steps per generator step.
        lr, betas, lr_decay_every, max_g_steps: optimiser and schedule, counted in generator steps.
        thres_int: STGAN's attribute scaling (0.5 makes ``att_diff = att_t − att_s``).
        hard_masks: use the argmax of the soft masks, one-hot (the paper's "hard masks" comparison).
        table3_row: ``"i"`` … ``"vii"``: set ``conditioning``, ``decoder``, ``reconstruction``, ``seg_branch`` and
            (λ3 = 0 rows) ``lambda_mre`` as in that row of Table 3 (:data:`TABLE3_ROWS`); None: as given.
        channels_last: train with channels_last weights and input images (off by default; same math). With bf16
            autocast (``trainer.precision=bf16-mixed``) it lets oneDNN use a CPU's AMX tiles or a GPU's tensor
            cores at full rate; without native bf16 it is a layout change only.
        target_boost: off by default (``{}``). ``{name: p}``: after the shuffle, each training target with
            attribute ``name`` off gets it on with probability p, the synthetic world's consistency applied
            (Bald on turns Bangs and the hair colours off; :func:`~portrait_models.maggan.losses.boosted_targets`).
            Not in the paper: more Bald requests than the batch's real vectors give.
        flip_rule: the rule that completes a test-time edit, saved with the checkpoint: the sample grid, the
            synthetic judge, the edit CLI and the editor use it. ``"conflict_free"`` (default): STGAN's
            ``check_attribute_conflict``; ``"consistent"``: the synthetic world's (Bald on also turns the hair
            colours off, a hair colour on turns Bald off), the vectors ``target_boost`` trains on.
    """

    def __init__(
        self,
        image_size: int = 256,
        enc_dim: int = 64,
        dec_dim: int = 64,
        num_layers: int = 5,
        max_dim: int = 1024,
        shortcut_layers: int = 4,
        inject_layers: int = 4,
        conditioning: str = "mask",
        decoder: str = "spade",
        spade_hidden: int = 128,
        spade_norm: str = "batch",
        blend: bool = False,
        seg_branch: bool = False,
        d_levels: int = 1,
        d_level_size: int = 256,
        dis_dim: int = 64,
        dis_layers: int = 5,
        dis_max_dim: int = 1024,
        dis_fc_dim: int = 1024,
        reconstruction: str = "rec",
        lambda_rec: float = 100.0,
        lambda_cls: float = 10.0,
        lambda_mre: float = 100.0,
        lambda_gp: float = 10.0,
        lambda_seg: float = 1.0,
        n_critic: int = 5,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_decay_every: int = 94_700,
        max_g_steps: int = 189_400,
        thres_int: float = 0.5,
        hard_masks: bool = False,
        table3_row: str | None = None,
        channels_last: bool = False,
        target_boost: Mapping[str, float] | None = None,
        flip_rule: str = "conflict_free",
    ) -> None:
        super().__init__()
        if table3_row is not None:
            if table3_row not in TABLE3_ROWS:
                raise ValueError(f"table3_row must be one of {', '.join(TABLE3_ROWS)} or null, got {table3_row!r}")
            row = TABLE3_ROWS[table3_row]
            conditioning, decoder, reconstruction = row["conditioning"], row["decoder"], row["reconstruction"]
            seg_branch = row.get("seg_branch", False)
            lambda_mre = lambda_mre if row["mre"] else 0.0
        if reconstruction not in ("rec", "cycle"):
            raise ValueError(f"reconstruction must be 'rec' or 'cycle', got {reconstruction!r}")
        target_boost = dict(target_boost or {})
        for name, p in target_boost.items():
            if name not in EDIT_ATTRIBUTES or not 0 <= float(p) <= 1:
                raise ValueError(
                    f"target_boost maps edited attributes ({', '.join(EDIT_ATTRIBUTES)}) to probabilities in [0, 1], "
                    f"got {name!r}: {p!r}"
                )
        if flip_rule not in ("conflict_free", "consistent"):
            raise ValueError(f"flip_rule must be 'conflict_free' or 'consistent', got {flip_rule!r}")
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        if d_level_size * 2 ** (d_levels - 1) != image_size:
            raise ValueError(
                f"d_levels={d_levels} levels of {d_level_size}² tiles cover {d_level_size * 2 ** (d_levels - 1)}², "
                f"not image_size={image_size}"
            )
        self.save_hyperparameters()
        self.hparams.update(  # the effective switches (a row overrides the given ones)
            conditioning=conditioning, decoder=decoder, reconstruction=reconstruction, seg_branch=seg_branch,
            lambda_mre=lambda_mre, target_boost=target_boost,
        )  # fmt: skip
        self.automatic_optimization = False
        self.generator = MagGANGenerator(
            len(EDIT_ATTRIBUTES), enc_dim, dec_dim, num_layers, max_dim, shortcut_layers, inject_layers,
            conditioning, decoder, spade_hidden, spade_norm, blend, seg_branch,  # type: ignore[arg-type]
        )  # fmt: skip
        self.discriminator = MultiLevelDiscriminator(
            d_levels, d_level_size, len(EDIT_ATTRIBUTES), dis_dim, dis_layers, dis_max_dim, dis_fc_dim
        )
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))
        self.last_loss_terms: dict[str, Tensor] = {}
        self.phase = "train"

    # ------------------------------------------------------------------------------------- helpers
    def setup(self, stage: str) -> None:
        if self.hparams.channels_last:  # before configure_optimizers: Adam's state follows the parameters' layout
            self.to(memory_format=torch.channels_last)

    def inputs(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        """``(image, att_source, soft_masks)`` from a batch, with clear errors for missing keys."""
        for key in ("image", "attributes", "soft_masks"):
            if key not in batch:
                raise KeyError(
                    f"MagGAN batches need 'image', 'attributes' (B, 13) and 'soft_masks' (B, 19, h, w); {key!r} is "
                    "missing (CelebADataModule: set soft_masks and attribute_names=labels.EDIT_ATTRIBUTES)"
                )
        image, att, masks = batch["image"], batch["attributes"].float(), batch["soft_masks"].float()
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        if att.shape[1] != len(EDIT_ATTRIBUTES):
            raise ValueError(
                f"attributes must be (B, {len(EDIT_ATTRIBUTES)}) in EDIT_ATTRIBUTES order, got {tuple(att.shape)}"
            )
        if self.hparams.hard_masks:
            masks = F.one_hot(masks.argmax(1), masks.shape[1]).permute(0, 3, 1, 2).to(masks.dtype)
        return image, att, masks

    def _learning_rate(self) -> float:
        return self.hparams.lr * 0.1 ** (int(self.g_steps) // max(1, self.hparams.lr_decay_every))

    def _log_terms(self, prefix: str, terms: Mapping[str, Tensor], batch_size: int) -> None:
        detached = {f"{prefix}/{k}": v.detach() for k, v in terms.items()}
        self.last_loss_terms.update(detached)
        self.log_dict({f"train/{k}": v for k, v in detached.items()}, batch_size=batch_size)

    # ------------------------------------------------------------------------------------- losses
    def discriminator_loss(self, image: Tensor, fake: Tensor, att_source: Tensor) -> dict[str, Tensor]:
        """Eq. (14): mean over levels of (WGAN critic loss + λ_gp·GP + attribute BCE on the real images)."""
        d = self.discriminator
        real_levels = [d.level_input(image, k) for k in range(d.levels)]
        fake_levels = [d.level_input(fake.detach(), k) for k in range(d.levels)]
        terms = critic_terms(
            [d.level(k, x) for k, x in enumerate(real_levels)],
            [d.level(k, x) for k, x in enumerate(fake_levels)],
            att_source,
        )
        critics = [lambda x, k=k: d.level(k, x).adversarial for k in range(d.levels)]
        with torch.autocast(device_type=image.device.type, enabled=False):
            terms["gp"] = multilevel_gradient_penalty(critics, real_levels, fake_levels)
        terms["wasserstein"] = -(terms["adv_real"] + terms["adv_fake"])
        hp = self.hparams
        terms["total"] = terms["adv_real"] + terms["adv_fake"] + hp.lambda_gp * terms["gp"] + terms["cls"]
        return terms

    def generator_loss(
        self, image: Tensor, att_source: Tensor, att_target: Tensor, att_diff: Tensor, masks: Tensor
    ) -> dict[str, Tensor]:
        """Eq. (11) (+ the seg CE of MagGAN+Seg); every term is returned for logging."""
        hp, g = self.hparams, self.generator
        edit = g.forward_full(image, att_diff, masks)
        terms = generator_adversarial_terms(self.discriminator(edit.image), att_target)
        if hp.reconstruction == "rec":
            terms["rec"] = reconstruction_loss(g(image, torch.zeros_like(att_diff), masks), image)
        else:
            terms["rec"] = reconstruction_loss(g(edit.image, -att_diff, masks), image)
        mre_masks = edit.masks.detach() if edit.masks is not None else masks
        terms["mre"] = mask_guided_reconstruction_loss(edit.image, image, mre_masks, att_diff, g.condition)
        total = (
            terms["gan"] + hp.lambda_rec * terms["rec"] + hp.lambda_cls * terms["cls"] + hp.lambda_mre * terms["mre"]
        )
        if edit.seg_logits is not None:
            target = F.interpolate(masks, size=image.shape[-2:], mode="bilinear", align_corners=False).argmax(1)
            terms["seg"] = F.cross_entropy(edit.seg_logits.float(), target)
            total = total + hp.lambda_seg * terms["seg"]
        terms["total"] = total
        return terms

    # ------------------------------------------------------------------------------------- training
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        hp = self.hparams
        if int(self.g_steps) >= hp.max_g_steps:
            self.trainer.should_stop = True
            return
        image, att_source, masks = self.inputs(batch)
        opt_g, opt_d = self.optimizers()
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = self._learning_rate()
        att_target = shuffled_targets(att_source)
        if hp.target_boost:
            att_target = boosted_targets(att_target, hp.target_boost)
        att_diff = attribute_difference(att_source, att_target, hp.thres_int)
        batch_size = image.shape[0]

        with self.toggled_optimizer(opt_d):
            with torch.no_grad():
                fake = self.generator(image, att_diff, masks)
            d_terms = self.discriminator_loss(image, fake, att_source)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_terms["total"])
            opt_d.step()
        self._log_terms("d", d_terms, batch_size)

        self.batches_seen += 1
        if int(self.batches_seen) % hp.n_critic == 0:
            with self.toggled_optimizer(opt_g):
                g_terms = self.generator_loss(image, att_source, att_target, att_diff, masks)
                opt_g.zero_grad(set_to_none=True)
                self.manual_backward(g_terms["total"])
                opt_g.step()
            self.g_steps += 1
            self._log_terms("g", g_terms, batch_size)
        self.log("train/lr", self._learning_rate(), batch_size=batch_size)
        if int(self.g_steps) >= hp.max_g_steps:
            self.trainer.should_stop = True

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = tuple(self.hparams.betas)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas),
        ]

    # ------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def edit(self, image: Tensor, att_diff: Tensor, soft_masks: Tensor | None) -> Tensor:
        """``G(x, att_diff)`` with the generator as it stands (call ``eval()`` first for running BN stats)."""
        return self.generator(image, att_diff.to(image.dtype), soft_masks)

    @property
    def flip_rule(self) -> str:
        """The rule completing a test-time edit (``flip_rule`` hyperparameter; STGAN's for checkpoints without it)."""
        return self.hparams.get("flip_rule", "conflict_free")

    @torch.no_grad()
    def single_flips(self, image: Tensor, att_source: Tensor, masks: Tensor, rule: str = "plain") -> Tensor:
        """(B, C, 3, H, W): edit ``i`` flips attribute ``i``, alone (``"plain"``: ``(1 − 2·att_s)·e_i``, eq. 2) or
        with STGAN's test-time conflict rules (``"conflict_free"``, :mod:`portrait_models.maggan.attributes`)."""
        changes = single_flip_changes(att_source, rule)
        return torch.stack([self.edit(image, changes[:, i], masks) for i in range(changes.shape[1])], dim=1)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        from metrics.functional.mre import mask_aware_reconstruction_error

        image, att_source, masks = self.inputs(batch)
        recon = self.edit(image, torch.zeros_like(att_source), masks)
        size = image.shape[0]
        # batch_size as a float: Lightning's synced mean floors an integer item count (3 items on 2 ranks -> 1)
        self.log("val/rec_l1", F.l1_loss(recon, image), prog_bar=True, batch_size=float(size), sync_dist=True)
        edited = self.single_flips(image, att_source, masks)
        full = F.interpolate(masks, size=image.shape[-2:], mode="bilinear", align_corners=False)
        cond = self.generator.condition
        mre = mask_aware_reconstruction_error(image, edited, full, 1 - 2 * att_source, cond.ar_plus, cond.ar_minus)
        self.log("val/mre", mre, prog_bar=True, batch_size=float(size), sync_dist=True)

    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, Any]) -> Tensor:
        """Rows: input | reconstruction G(x, 0) | one row per attribute, that attribute flipped with the model's
        ``flip_rule``: STGAN's conflict rules by default (a hair colour turned on turns the other two off; Bald and
        Bangs exclude each other), or the world's (``"consistent"``: Bald on also turns the hair colours off)."""
        image, att_source, masks = self.inputs(batch)
        recon = self.edit(image, torch.zeros_like(att_source), masks)
        edits = self.single_flips(image, att_source, masks, self.flip_rule).transpose(0, 1).flatten(0, 1)
        rows = torch.cat([image, recon, edits])
        return make_grid(((rows.float() + 1) / 2).clamp(0, 1), nrow=image.shape[0], padding=1)
