"""MaskGAN as one Lightning system: MaskVAE pretraining → DMN training → EBST, in one resumable run.

Paper: Lee et al., "MaskGAN: Towards Diverse and Interactive Facial Image Manipulation", CVPR 2020
(+ supplement). The phases follow the paper's pipeline (Fig. 2, Alg. 1):

1. ``maskvae``: MaskVAE on target masks, ``L = CE + λ_KL·KL`` (Eq. 3–5, λ_KL = 1e-5), Adam 2e-4.
2. ``dmn``: the Dense Mapping Network G_A with the multi-scale discriminator, ``L = L_adv + λ_feat·L_feat +
   λ_percept·L_percept`` (Eq. 6, both λ = 10), Adam 2e-4, β = (0.5, 0.999).
3. ``ebst`` (Editing Behavior Simulated Training, only for MaskGAN†): every batch runs stage I (update G_A
   on (I_t, M_t) with Eq. 6) and stage II (z_inter/outer = z_t ± (z_ref − z_t)/λ_inter through the frozen
   MaskVAE, λ_inter = 2.5; G_A renders I_inter, I_outer in the style of I_t; the Alpha Blender blends them;
   Eq. 6 on the blend updates G_B = DMN + blender), learning rate 5e-5 (supplement).

The phase is a function of the module's own batch counter (a buffer saved in checkpoints), so
``run.ckpt_path=last`` resumes inside any phase, and the run stops itself when the schedule is done.
Trainer ``max_steps`` counts every optimizer step (1 per batch for the VAE, 2 for DMN, 4 for EBST; 3 with
``ebst_blend_d_step=False``).

Choices where the paper is silent (from the released code, reference_implementations.md §1):
discriminator loss ``0.5·(real + fake)``; pix2pixHD feature-matching weights (1/num_D)·(4/(n_layers+1));
VGG19 L1 with weights [1/32 … 1] on relu1_1 … relu5_1 and no ImageNet normalisation; the blender sees and
the discriminator judges the blend against the original mask M_t (as coded). M_ref is another mask of the
same batch (the batch rolled by one). z_t and z_ref are the encoder means (no sampling) so the simulated
edits are deterministic given the masks; decoded masks are taken by argmax. Options cover the released
code's deviations: ``gan_loss="lsgan"`` (pix2pixHD's default; the paper writes the log loss of Eq. 7),
``lr=5e-5`` (the demo's train options), ``lr_decay`` (pix2pixHD's linear decay over the second half).

Speed option ``reuse_real_features=True``: the generator step takes the D-step's (detached) features of
the real images as feature-matching targets instead of recomputing them with the just-updated D, one D
forward less per update (three instead of four, as the released pix2pixHD-based code, which computes every
D output before either update), and the D step scores real and fake in one batched call (instance norm:
the same numbers as two calls). The default (False) keeps the recomputation, whose targets come from the D
the generator is matched against.

Speed option ``shared_d_forward=True`` (implies the reuse above): D runs once on the real and once on the
generated batch per update, and both updates come from those outputs: D's gradient from its loss (the
generated batch detached, through ``backward(inputs=D's parameters)``) and the generator's from its
adversarial and feature-matching terms, so the generator is matched against D from *before* this batch's D
update. That is the released code's order (pix2pixHD's ``forward`` computes every D output, then G and D
step), with two D forwards instead of its three. ``adam_fused=True`` uses PyTorch's fused Adam (one kernel
per step, the same update up to float reassociation). ``channels_last=True`` keeps the networks and inputs in
channels-last memory (the same math in another summation order; oneDNN's faster kernels on AVX-512 CPUs and
cuDNN's on GPUs); Adam moments loaded from a checkpoint of the other layout are re-laid out like their
parameters (:func:`~portrait_models.checkpoints.keep_state_layout`). ``channels_last_d=False`` leaves D
contiguous inside such a model (on CPU it gains nothing from channels-last and pays for weight-gradient
reorders and fused Adam's layout copies). ``make bench-maskgan`` times the default against these options.

Checkpoints hold the trained networks (DMN, its EMA copy, D, and for MaskGAN† the MaskVAE and the blender)
and the Adam states of the optimizers that are still to be used: a finished phase's optimizer state is
dropped on save (the MaskVAE's once the DMN phase starts, every one once the schedule is done), and frozen
networks (VGG19) are never saved. :func:`checkpoint_bytes` gives the sizes from the state-dict shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import make_grid

from datamodules.labels import CELEBAMASK_PALETTE, label_to_onehot
from portrait_models.checkpoints import keep_state_layout
from portrait_models.distributed import rolled_rows, world
from portrait_models.ema import EMA
from portrait_models.losses import PerceptualLoss, discriminator_loss, feature_matching_loss, generator_loss
from portrait_models.losses.perceptual import PIX2PIXHD_VGG_WEIGHTS, VGG19_RELU_X_1
from portrait_models.maskgan.networks import (
    AlphaBlender,
    DenseMappingNetwork,
    MaskGANDiscriminator,
    MaskVAE,
    maskvae_loss,
    simulate_edit_latents,
)

Phase = Literal["maskvae", "dmn", "ebst", "done"]
# The optimizers each phase steps: the MaskVAE's, G_A's and D's, and in EBST also G_B's (DMN + blender).
PHASE_OPTIMIZERS: dict[str, set[str]] = {"maskvae": {"vae"}, "dmn": {"g", "d"}, "ebst": {"g", "d", "gb"}}


def _contiguous_inputs(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Forward pre-hook of a network kept contiguous inside a channels-last model (``channels_last_d=False``)."""
    return tuple(a.contiguous() for a in args)


class MaskGAN(L.LightningModule):
    """MaskGAN / MaskGAN† / Pix2PixHD-m / MaskGAN-concat, selected by constructor switches.

    Args (paper settings are the defaults; see ``experiments/configs/maskgan_celebamaskhq_512.yaml``):
        ebst: train with EBST (MaskGAN†); False trains the DMN only (MaskGAN) and skips the MaskVAE.
        use_mask_branch: False removes the style encoder's mask branch (the paper's Pix2PixHD-m baseline).
        fusion: ``"sft"`` (paper) or ``"concat"`` (supplement ablation MaskGAN-concat).
        maskvae_steps, dmn_steps, ebst_steps: phase lengths in batches.
        vgg_pretrained: load ImageNet VGG19 from the weights cache (False: a fixed random VGG19, for tests
            and the synthetic world, where no weights can be had).
        vgg_layers: how many of relu1_1 … relu5_1 the perceptual loss uses (paper: all 5; fewer is a cheap
            CPU setting, e.g. for the synthetic world).
        lambda_l1: weight of a pixel L1 term (paper: 0, none). Without ImageNet VGG19 weights (the synthetic
            world, CPU tests) the random-VGG perceptual term barely constrains reconstruction, so those
            configs add it; it is always logged as ``train/g/l1``.
        reuse_real_features: feature matching against the D-step's features of the real images (before
            D's update, as the released code) instead of recomputing them after it; one D forward less, and
            real + fake in one D call.
        shared_d_forward: one D forward per batch for real and one for generated images, shared by the D
            and the generator update (the generator meets D from before its update, as the released code);
            two D forwards instead of four (default) or three (``reuse_real_features``). Implies the latter.
        adam_fused: PyTorch's fused Adam (CPU and CUDA) instead of the per-tensor loop.
        channels_last: keep networks and inputs in channels-last memory format: the same numbers to fp32
            rounding, faster convolutions on GPU and on AVX-512 CPUs (``make bench-maskgan``).
        channels_last_d: with ``channels_last``, the discriminator too (default). False keeps D and its
            inputs contiguous while the DMN and VGG19 stay channels-last: the same numbers to fp32 rounding.
            On CPU D's 4x4 convolutions gain nothing from channels-last, while oneDNN reorders each of their
            weight gradients into it and fused Adam copies every channels-last tensor to a contiguous one
            and back (measured, ``make bench-maskgan``).
        style_init: ``"pix2pixhd"`` draws every DMN conv from N(0, 0.02), as the released code; ``"pytorch"``
            redraws the style encoder's convs with PyTorch's default init. The style encoder has no
            normalisation, so at N(0, 0.02) its output shrinks layer by layer and every face starts with almost
            the same AdaIN parameters; the short synthetic runs use ``"pytorch"`` so colour reaches the
            generator within a few hundred batches.
        ebst_blend_d_step: EBST updates D twice per batch, on stage I's reconstruction and on stage II's blend
            (default); False updates it in stage I only (G_B still meets D on the blend).
    """

    def __init__(
        self,
        num_classes: int = 19,
        image_size: int = 512,
        ngf: int = 64,
        n_downsample: int = 4,
        n_blocks: int = 4,
        style_channels: int = 16,
        style_downsample: int = 5,
        fusion: str = "sft",
        use_mask_branch: bool = True,
        ndf: int = 64,
        n_layers_d: int = 3,
        num_d: int = 2,
        blender_ngf: int = 32,
        blender_downsample: int = 3,
        blender_blocks: int = 3,
        vae_base_channels: int = 32,
        vae_latent_dim: int = 1024,
        vae_levels: int = 7,
        gan_loss: str = "vanilla",
        lambda_feat: float = 10.0,
        lambda_percept: float = 10.0,
        lambda_l1: float = 0.0,
        kl_weight: float = 1e-5,
        lambda_inter: float = 2.5,
        vgg_pretrained: bool = True,
        vgg_imagenet_normalize: bool = False,
        vgg_layers: int = 5,
        ebst: bool = True,
        maskvae_steps: int = 50_000,
        dmn_steps: int = 200_000,
        ebst_steps: int = 100_000,
        lr: float = 2e-4,
        ebst_lr: float = 5e-5,
        maskvae_lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        lr_decay: bool = True,
        ema_halflife_kimg: float = 10.0,
        ema_rampup: float | None = 0.05,
        channels_last: bool = False,
        channels_last_d: bool = True,
        reuse_real_features: bool = False,
        shared_d_forward: bool = False,
        adam_fused: bool = False,
        ebst_blend_d_step: bool = True,
        style_init: str = "pix2pixhd",
    ) -> None:
        super().__init__()
        if fusion not in ("sft", "concat"):
            raise ValueError(f"fusion must be 'sft' or 'concat', got {fusion!r}")
        if gan_loss not in ("vanilla", "lsgan", "hinge"):
            raise ValueError(f"gan_loss must be vanilla, lsgan or hinge, got {gan_loss!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.dmn = DenseMappingNetwork(
            num_classes, 3, ngf, n_downsample, n_blocks, style_channels, style_downsample, fusion, use_mask_branch,
            style_init=style_init,
        )  # fmt: skip
        self.discriminator = MaskGANDiscriminator(num_classes, 3, ndf, n_layers_d, num_d)
        self.dmn_ema = EMA(self.dmn, ema_halflife_kimg, ema_rampup)
        if not 1 <= vgg_layers <= len(VGG19_RELU_X_1):
            raise ValueError(f"vgg_layers must be in 1..{len(VGG19_RELU_X_1)} (relu1_1 .. relu5_1), got {vgg_layers}")
        self.perceptual = PerceptualLoss(
            layer_weights=PIX2PIXHD_VGG_WEIGHTS[:vgg_layers],
            slice_ends=VGG19_RELU_X_1[:vgg_layers],
            imagenet_normalize=vgg_imagenet_normalize,
            pretrained=vgg_pretrained,
        )
        if ebst:
            self.mask_vae = MaskVAE(num_classes, image_size, vae_base_channels, vae_latent_dim, vae_levels)
            self.blender = AlphaBlender(3, blender_ngf, blender_downsample, blender_blocks)
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        self._previous_mask: Tensor | None = None
        self._batch_size = 1
        if channels_last:
            self.to(memory_format=torch.channels_last)
            if not channels_last_d:
                self.discriminator.to(memory_format=torch.contiguous_format)
                self.discriminator.register_forward_pre_hook(_contiguous_inputs)

    # ------------------------------------------------------------------------------------- schedule
    @property
    def schedule(self) -> list[tuple[Phase, int]]:
        hp = self.hparams
        phases: list[tuple[Phase, int]] = [("dmn", hp.dmn_steps)]
        if hp.ebst:
            phases = [("maskvae", hp.maskvae_steps), *phases, ("ebst", hp.ebst_steps)]
        return [(name, steps) for name, steps in phases if steps > 0]

    @property
    def total_batches(self) -> int:
        return sum(steps for _, steps in self.schedule)

    def phase_at(self, batch: int) -> tuple[Phase, float]:
        """The phase of batch number ``batch`` and the fraction of that phase already done."""
        start = 0
        for name, steps in self.schedule:
            if batch < start + steps:
                return name, (batch - start) / steps
            start += steps
        return "done", 1.0

    @property
    def phase(self) -> Phase:
        return self.phase_at(int(self.batches_seen))[0]

    def _set_learning_rates(self, phase: Phase, progress: float) -> None:
        hp = self.hparams
        base = hp.ebst_lr if phase == "ebst" else hp.lr
        decay = 1.0 if not hp.lr_decay or progress < 0.5 else max(0.0, 2.0 * (1.0 - progress))
        lrs = {"g": base * decay, "d": base * decay, "vae": hp.maskvae_lr, "gb": hp.ebst_lr * decay}
        for name, opt in self.named_optimizers().items():
            for group in opt.param_groups:
                group["lr"] = lrs[name]

    def optimizer_names(self) -> list[str]:
        return ["g", "d", "vae", "gb"] if self.hparams.ebst else ["g", "d"]

    def named_optimizers(self) -> dict[str, Any]:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        return dict(zip(self.optimizer_names(), optimizers, strict=True))

    # ------------------------------------------------------------------------------------- helpers
    def _inputs(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        image, label = batch["image"], batch["label"]
        if label.max() >= self.hparams.num_classes:
            raise ValueError(
                f"label value {int(label.max())} >= num_classes={self.hparams.num_classes}; MaskGAN expects the "
                "19 official CelebAMask-HQ classes"
            )
        onehot = label_to_onehot(label, self.hparams.num_classes).to(image.dtype)
        if self.hparams.channels_last:
            image, onehot = (t.contiguous(memory_format=torch.channels_last) for t in (image, onehot))
        return image, label, onehot

    def _source_mask(self, onehot: Tensor) -> Tensor | None:
        return onehot if self.hparams.use_mask_branch else None

    def _log_terms(self, prefix: str, terms: Mapping[str, Tensor]) -> None:
        values = {f"train/{prefix}/{k}": v.detach() for k, v in terms.items()}
        self.log_dict(values, prog_bar=False, batch_size=self._batch_size)

    def _discriminator_step(
        self, opt: Any, onehot: Tensor, real: Tensor, fake: Tensor, prefix: str
    ) -> list[list[Tensor]]:
        """One D update on real and (detached) fake, scored in one batched call; returns D's features of the
        real images from before the update, detached (for ``reuse_real_features``)."""
        with self.toggled_optimizer(opt):
            if self.hparams.reuse_real_features or self.hparams.shared_d_forward:  # one batched call (instance norm)
                batch = real.shape[0]
                features = self.discriminator(torch.cat([onehot, onehot]), torch.cat([real, fake.detach()]))
                real_features = [[f[:batch] for f in scale] for scale in features]
                fake_features = [[f[batch:] for f in scale] for scale in features]
            else:
                real_features = self.discriminator(onehot, real)
                fake_features = self.discriminator(onehot, fake.detach())
            real_term, fake_term = discriminator_loss(self.hparams.gan_loss, real_features, fake_features)
            loss = 0.5 * (real_term + fake_term)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
        self._log_terms(prefix, {"real": real_term, "fake": fake_term, "total": loss})
        return [[f.detach() for f in scale] for scale in real_features]

    def generator_terms(
        self,
        onehot: Tensor,
        real: Tensor,
        fake: Tensor,
        real_features: list[list[Tensor]] | None = None,
        fake_features: list[list[Tensor]] | None = None,
    ) -> dict[str, Tensor]:
        """Eq. 6 for one generated batch conditioned on ``onehot``: adversarial, feature matching, VGG.
        ``real_features`` (D's features of ``real``, used as constants) are recomputed with the current D when
        not given; ``fake_features`` (D's features of ``fake``, with their graph) likewise."""
        if fake_features is None:
            fake_features = self.discriminator(onehot, fake)
        if real_features is None:
            with torch.no_grad():
                real_features = self.discriminator(onehot, real)
        return {
            "adv": generator_loss(self.hparams.gan_loss, fake_features),
            "feat": feature_matching_loss(fake_features, real_features),
            "percept": self.perceptual(fake, real),
        }

    def _generator_step(
        self,
        opt: Any,
        onehot: Tensor,
        real: Tensor,
        fake: Tensor,
        prefix: str,
        real_features: list[list[Tensor]] | None = None,
    ) -> None:
        reuse = self.hparams.reuse_real_features or self.hparams.shared_d_forward
        with self.toggled_optimizer(opt):
            terms = self.generator_terms(onehot, real, fake, real_features if reuse else None)
            loss = self._generator_total(terms, real, fake)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt.step()
        self._log_terms(prefix, {**terms, "total": loss})

    def _generator_total(self, terms: dict[str, Tensor], real: Tensor, fake: Tensor) -> Tensor:
        """Adds the pixel L1 term to ``terms`` and returns Eq. 6's weighted sum (+ λ_L1·L1)."""
        hp = self.hparams
        terms["l1"] = F.l1_loss(fake, real)
        return (
            terms["adv"]
            + hp.lambda_feat * terms["feat"]
            + hp.lambda_percept * terms["percept"]
            + hp.lambda_l1 * terms["l1"]
        )

    def _shared_d_step(
        self, opt_g: Any, opt_d: Any, onehot: Tensor, real: Tensor, fake: Tensor, g_prefix: str, d_prefix: str
    ) -> None:
        """``shared_d_forward``: D's and the generator's update from D before its update (the released code's
        order). On one process D runs once on ``real`` and once on ``fake``, and each backward reaches only its
        own network's parameters (``inputs=``), so D's loss sends nothing into the generator. Under DDP, whose
        reducer expects every parameter a loss's graph reaches to get a gradient in that backward, the
        generator's D forward runs separately with D frozen (three forwards, the same numbers)."""
        hp = self.hparams
        shared = world()[0] == 1
        real_features = self.discriminator(onehot, real)
        if shared:
            fake_features = fake_for_d = self.discriminator(onehot, fake)
        else:
            fake_for_d = self.discriminator(onehot, fake.detach())
            with self.toggled_optimizer(opt_g):
                fake_features = self.discriminator(onehot, fake)
        real_term, fake_term = discriminator_loss(hp.gan_loss, real_features, fake_for_d)
        loss_d = 0.5 * (real_term + fake_term)
        detached = [[f.detach() for f in scale] for scale in real_features]
        terms = self.generator_terms(onehot, real, fake, detached, fake_features)
        loss_g = self._generator_total(terms, real, fake)
        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        if shared:
            d_params = [p for group in opt_d.param_groups for p in group["params"]]
            g_params = [p for group in opt_g.param_groups for p in group["params"]]
            self.manual_backward(loss_d, inputs=d_params, retain_graph=True)
            self.manual_backward(loss_g, inputs=g_params)
        else:
            self.manual_backward(loss_d)
            self.manual_backward(loss_g)
        opt_d.step()
        opt_g.step()
        self._log_terms(d_prefix, {"real": real_term, "fake": fake_term, "total": loss_d})
        self._log_terms(g_prefix, {**terms, "total": loss_g})

    # ------------------------------------------------------------------------------------- phases
    def _maskvae_step(self, onehot: Tensor, label: Tensor, opt: Any) -> None:
        with self.toggled_optimizer(opt):
            logits, mu, logvar = self.mask_vae(onehot)
            loss = maskvae_loss(logits, label, mu, logvar, self.hparams.kl_weight)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss.total)
            opt.step()
        accuracy = (logits.argmax(1) == label).float().mean()
        self._log_terms("vae", {"total": loss.total, "ce": loss.reconstruction, "kl": loss.kl, "acc": accuracy})

    def _dmn_step(self, image: Tensor, onehot: Tensor, opt_g: Any, opt_d: Any) -> None:
        """Stage I / DMN training: reconstruct I_t from its own mask and style."""
        fake = self.dmn(onehot, self._source_mask(onehot), image)
        if self.hparams.shared_d_forward:
            self._shared_d_step(opt_g, opt_d, onehot, image, fake, "g", "d")
            return
        real_features = self._discriminator_step(opt_d, onehot, image, fake, "d")
        self._generator_step(opt_g, onehot, image, fake, "g", real_features)

    @torch.no_grad()
    def simulate_edits(self, onehot: Tensor) -> tuple[Tensor, Tensor]:
        """EBST's M_inter and M_outer (Alg. 1 lines 3–7) as one-hot masks, through the frozen MaskVAE."""
        reference = self._reference_masks(onehot)
        self.mask_vae.eval()
        mu_t, _ = self.mask_vae.encode(onehot)
        mu_ref, _ = self.mask_vae.encode(reference)
        z_inter, z_outer = simulate_edit_latents(mu_t, mu_ref, self.hparams.lambda_inter)
        decoded = self.mask_vae.decode(torch.cat([z_inter, z_outer])).argmax(1)
        masks = label_to_onehot(decoded, self.hparams.num_classes).to(onehot.dtype)
        return masks.chunk(2)

    def _reference_masks(self, onehot: Tensor) -> Tensor:
        """M_ref: another mask of the batch (rolled by one); with batch size 1 the previous batch's mask."""
        if onehot.shape[0] > 1 or world()[0] > 1:  # under DDP the neighbour in the global batch, as on one process
            return rolled_rows(onehot)
        previous = self._previous_mask if self._previous_mask is not None else onehot
        self._previous_mask = onehot.detach()
        return previous if previous.shape == onehot.shape else onehot

    def _ebst_step(self, image: Tensor, onehot: Tensor, opt_g: Any, opt_d: Any, opt_gb: Any) -> None:
        self._dmn_step(image, onehot, opt_g, opt_d)  # stage I
        m_inter, m_outer = self.simulate_edits(onehot)  # stage II
        style = self.dmn.encode_style(image, self._source_mask(onehot))
        rendered = self.dmn.generate(torch.cat([m_inter, m_outer]), style.repeat(2, 1))
        i_inter, i_outer = rendered.chunk(2)
        blend, alpha = self.blender(i_inter, i_outer)
        if self.hparams.ebst_blend_d_step and self.hparams.shared_d_forward:
            self._shared_d_step(opt_gb, opt_d, onehot, image, blend, "gb", "d_blend")
        else:
            real_features = None
            if self.hparams.ebst_blend_d_step:
                real_features = self._discriminator_step(opt_d, onehot, image, blend, "d_blend")
            self._generator_step(opt_gb, onehot, image, blend, "gb", real_features)
        self.log("train/gb/alpha_mean", alpha.detach().mean(), batch_size=self._batch_size)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        phase, progress = self.phase_at(int(self.batches_seen))
        if phase == "done":
            self.trainer.should_stop = True
            return
        self._set_learning_rates(phase, progress)
        opts = self.named_optimizers()
        image, label, onehot = self._inputs(batch)
        self._batch_size = image.shape[0]
        if phase == "maskvae":
            self._maskvae_step(onehot, label, opts["vae"])
        else:
            if phase == "dmn":
                self._dmn_step(image, onehot, opts["g"], opts["d"])
            else:
                self._ebst_step(image, onehot, opts["g"], opts["d"], opts["gb"])
            self.dmn_ema.update(self.dmn, image.shape[0])
        self.batches_seen += 1
        self.log("train/phase", float(["maskvae", "dmn", "ebst"].index(phase)), prog_bar=True, batch_size=1)
        if int(self.batches_seen) >= self.total_batches:
            self.trainer.should_stop = True

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        betas = tuple(hp.betas)
        params = {"g": self.dmn.parameters(), "d": self.discriminator.parameters()}
        if hp.ebst:
            params["vae"] = self.mask_vae.parameters()
            params["gb"] = [*self.dmn.parameters(), *self.blender.parameters()]
        lrs = {"g": hp.lr, "d": hp.lr, "vae": hp.maskvae_lr, "gb": hp.ebst_lr}
        fused = True if hp.adam_fused else None
        return [  # moments re-laid out like their parameters on load (a checkpoint of the other layout)
            keep_state_layout(torch.optim.Adam(params[name], lr=lrs[name], betas=betas, fused=fused))
            for name in self.optimizer_names()
        ]

    def finished_optimizers(self, phase: Phase | None = None) -> list[str]:
        """Names of the optimizers no phase from ``phase`` (default: the current one) on will step."""
        phase = phase or self.phase
        names = [name for name, _ in self.schedule]
        remaining = names[names.index(phase) :] if phase in names else []
        still = set().union(*(PHASE_OPTIMIZERS[name] for name in remaining)) if remaining else set()
        return [name for name in self.optimizer_names() if name not in still]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the Adam state of optimizers whose phases are over (their param groups, with the learning
        rates, stay so that the checkpoint still resumes)."""
        states = checkpoint.get("optimizer_states")
        if not states or len(states) != len(self.optimizer_names()):
            return
        finished = set(self.finished_optimizers())
        for name, state in zip(self.optimizer_names(), states, strict=True):
            if name in finished:
                state["state"] = {}

    # ------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def render(self, target_onehot: Tensor, source_onehot: Tensor, source_image: Tensor, ema: bool = True) -> Tensor:
        """Render the target mask in the style of ``source_image`` (whose own mask is ``source_onehot``)."""
        net = self.dmn_ema.averaged if ema else self.dmn
        return net(target_onehot, self._source_mask(source_onehot), source_image)

    def metric_samples(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Reconstructions from the EMA DMN: each image's own mask rendered in its own style."""
        image, label, onehot = self._inputs(batch)
        return {"fake": self.render(onehot, onehot, image), "real": image, "label": label, "source": image}

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        samples = self.metric_samples(batch)
        size = samples["real"].shape[0]
        # batch_size as a float: Lightning's synced mean floors an integer item count (3 items on 2 ranks -> 1)
        self.log(
            "val/l1", F.l1_loss(samples["fake"], samples["real"]), prog_bar=True, batch_size=float(size), sync_dist=True
        )
        if self.hparams.ebst and self.phase in ("maskvae", "ebst", "done"):
            _, label, onehot = self._inputs(batch)
            logits, _, _ = self.mask_vae(onehot, sample=False)
            self.log("val/vae_acc", (logits.argmax(1) == label).float().mean(), batch_size=float(size), sync_dist=True)

    @torch.no_grad()
    def sample_grid(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Rows: target mask | real image | reconstruction (EMA) | style copy from the next image."""
        image, label, onehot = self._inputs(batch)
        palette = torch.as_tensor(CELEBAMASK_PALETTE, device=image.device, dtype=torch.float32) / 255.0
        mask_rgb = palette[label].permute(0, 3, 1, 2)
        recon = self.render(onehot, onehot, image)
        style_copy = self.render(onehot, onehot.roll(1, 0), image.roll(1, 0))
        rows = [mask_rgb, (image + 1) / 2, (recon + 1) / 2, (style_copy + 1) / 2]
        return make_grid(torch.cat([r.float().clamp(0, 1) for r in rows]), nrow=image.shape[0], padding=1)


def checkpoint_bytes(
    model: MaskGAN, phase: Phase, drop_finished: bool = True, bytes_per_value: int = 4
) -> dict[str, int]:
    """Bytes a checkpoint of ``model`` saved during ``phase`` takes, by part, from state-dict shapes: each
    network's tensors, and 2 Adam moments per parameter of every optimizer that has stepped by then (Adam's
    state appears at its first step) and, with ``drop_finished``, is still to be used
    (:meth:`MaskGAN.finished_optimizers`). Works on a model built on the ``meta`` device."""
    sizes: dict[str, int] = {}
    parts = {"dmn": "DMN", "dmn_ema": "EMA DMN", "discriminator": "D", "mask_vae": "MaskVAE", "blender": "blender"}
    state = model.state_dict()
    for prefix, label in parts.items():
        numel = sum(v.numel() for k, v in state.items() if k.split(".", 1)[0] == prefix)
        if numel:
            sizes[label] = numel * bytes_per_value
    params = {"g": list(model.dmn.parameters()), "d": list(model.discriminator.parameters())}
    if model.hparams.ebst:
        params["vae"] = list(model.mask_vae.parameters())
        params["gb"] = [*model.dmn.parameters(), *model.blender.parameters()]
    names = [name for name, _ in model.schedule]
    done = names if phase == "done" else names[: names.index(phase) + 1]
    stepped = set().union(*(PHASE_OPTIMIZERS[name] for name in done)) if done else set()
    finished = set(model.finished_optimizers(phase)) if drop_finished else set()
    for name in model.optimizer_names():
        if name in stepped and name not in finished:
            sizes[f"Adam {name}"] = 2 * sum(p.numel() for p in params[name]) * bytes_per_value
    return sizes
