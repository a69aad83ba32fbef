"""Gu et al.'s speed options compute what the default computes: the one-pass masked VGG loss against the
per-region formula, unpaired iterations without the logged-only reconstruction, fused Adam, and a
Lightning checkpoint of a channels-last system."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from test_mask_guided_training import TINY, _loader, _trainer, helen_tensors

from portrait_models.mask_guided.module import (
    PAIRED_TERMS,
    REGION_WEIGHTS,
    VGG_LAYER_WEIGHTS,
    MaskGuidedSystem,
    masked_vgg_loss,
)


def _per_region_vgg_loss(fake, real, masks):
    """The released code's form: one L1 mean per layer and region on the masked feature maps."""
    total, pooled = 0.0, dict(masks)
    for level, (w, f, r) in enumerate(zip(VGG_LAYER_WEIGHTS, fake, real, strict=True)):
        if level > 0:
            pooled = {k: F.max_pool2d(m, 2) for k, m in pooled.items()}
        for k, mu in REGION_WEIGHTS.items():
            total = total + w * mu * F.l1_loss(f * pooled[k], r * pooled[k])
    return total


def test_one_pass_masked_vgg_loss_equals_the_per_region_sum_with_overlapping_masks():
    g = torch.Generator().manual_seed(0)
    fake = [
        torch.randn(2, c, 32 >> i, 32 >> i, generator=g, requires_grad=True) for i, c in enumerate((4, 8, 8, 16, 16))
    ]
    real = [torch.randn(f.shape, generator=g) for f in fake]
    masks = {k: (torch.rand(2, 1, 32, 32, generator=g) > 0.6).float() for k in REGION_WEIGHTS}  # they overlap
    ours = masked_vgg_loss(fake, real, masks)
    reference = _per_region_vgg_loss(fake, real, masks)
    assert torch.allclose(ours, reference, rtol=1e-5)
    grads = torch.autograd.grad(ours, fake)
    reference_grads = torch.autograd.grad(reference, fake)
    for a, b in zip(grads, reference_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-9)
    assert float(masked_vgg_loss([f.detach() for f in fake], [f.detach() for f in fake], masks)) == 0.0


def _unpaired_step(log_every_step: bool):
    images, labels = helen_tensors(0, 2)
    torch.manual_seed(0)
    system = MaskGuidedSystem(**TINY, log_paired_terms_every_step=log_every_step)
    torch.manual_seed(1)
    prepared = system.prepare(images, labels)
    codes = system.encode(prepared, sample=True)
    out = system.forward_paths(images, prepared, codes, torch.tensor([1, 0]), paired=False)
    terms = system.generator_terms(images, prepared, codes, out, False)
    system.total_generator_loss(terms, False).backward()
    grads = {n: p.grad.clone() for n, p in system.generator.named_parameters() if p.grad is not None}
    return out, terms, grads


def test_unpaired_iterations_without_the_logged_reconstruction_give_the_same_loss_and_gradients():
    out_log, terms_log, grads_log = _unpaired_step(True)
    out, terms, grads = _unpaired_step(False)
    assert "recon" in out_log and "recon" not in out
    assert set(terms_log) - set(terms) == set(PAIRED_TERMS)  # only the weight-0 terms are gone
    for name, value in terms.items():
        assert torch.equal(value, terms_log[name]), name
    assert grads.keys() == grads_log.keys()
    for name, grad in grads.items():
        assert torch.equal(grad, grads_log[name]), name


def test_without_logging_every_step_training_still_steps_d_on_paired_iterations_only():
    images, labels = helen_tensors(0, 12)
    system = MaskGuidedSystem(**TINY, log_paired_terms_every_step=False)
    logged = []

    class Terms(pl.Callback):
        def on_train_batch_end(self, trainer, module, *args):
            logged.append(set(module.last_loss_terms))

    _trainer(max_epochs=1, limit_train_batches=3, callbacks=[Terms()]).fit(system, _loader(images, labels))
    assert [("g/global" in t, "d/total" in t, "d2/total" in t) for t in logged] == [
        (True, True, True),
        (False, False, True),
        (True, True, True),
    ]


def test_fused_adam_takes_the_per_tensor_step():
    steps = []
    for fused in (False, True):
        torch.manual_seed(0)
        system = MaskGuidedSystem(**TINY, adam_fused=fused)
        opt_g, _, _ = system.configure_optimizers()
        assert opt_g.defaults["fused"] is (True if fused else None)
        params = list(system.generator.parameters())
        for p in params:
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()))
        opt_g.step()
        steps.append([p.detach().clone() for p in params])
    for a, b in zip(*steps, strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_channels_last_checkpoint_round_trip_loads_strictly_with_weights_only(tmp_path):
    images, labels = helen_tensors(0, 8)
    torch.manual_seed(0)
    system = MaskGuidedSystem(**TINY, channels_last=True)
    trainer = _trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(system, _loader(images, labels))
    conv = next(m for m in system.generator.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # the layout really was channels-last
    path = tmp_path / "gu.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["channels_last"] is True
    system.eval()
    with torch.no_grad():
        expected = system.reconstruct(images[:2], labels[:2])
    for channels_last in (True, False):
        fresh = MaskGuidedSystem(**{**saved["hyper_parameters"], "channels_last": channels_last})
        fresh.setup("fit")  # channels-last weights when asked
        fresh.load_state_dict(saved["state_dict"], strict=True)
        assert int(fresh.iterations) == 2
        fresh.eval()
        with torch.no_grad():
            got = fresh.reconstruct(images[:2], labels[:2])
        if channels_last:
            assert torch.equal(got, expected)
        else:  # the contiguous layout sums in another order
            assert torch.allclose(got, expected, atol=1e-5)


def test_a_channels_last_fused_adam_checkpoint_resumes_contiguous_with_moments_in_the_parameters_layout(tmp_path):
    """Fused CPU Adam walks parameter, gradient and moments as flat buffers: moments left in the checkpoint's
    channels-last strides under contiguous parameters would pair the wrong elements."""
    images, labels = helen_tensors(0, 8)
    torch.manual_seed(0)
    system = MaskGuidedSystem(**TINY, channels_last=True, adam_fused=True)
    trainer = _trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(system, _loader(images, labels))
    path = tmp_path / "gu_cl_fused.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert any(not s["exp_avg"].is_contiguous() for s in saved["optimizer_states"][0]["state"].values())
    fresh = MaskGuidedSystem(**{**saved["hyper_parameters"], "channels_last": False})
    resumed = _trainer(max_epochs=2, limit_train_batches=2)
    resumed.fit(fresh, _loader(images, labels), ckpt_path=str(path))
    opt_g = resumed.optimizers[0]
    assert opt_g.defaults["fused"]
    params = [p for p in fresh.generator.parameters() if p in opt_g.state]
    assert params and all(opt_g.state[p]["exp_avg"].stride() == p.stride() for p in params)


# ------------------------------------------------------------------------------------------ the bench's accounting
def test_bench_splits_an_iteration_into_the_released_phases():
    from experiments.bench_mask_guided import released_layout

    # G forward 0→2, G backward + step 2→3, D step 3→6 (forwards 3→4), D2 step 6→10 (forwards 6→8)
    marks = {"start": 0.0, "paired": True, "backward": [2.0, 4.0, 8.0], "d_start": 3.0, "d_end": 6.0}
    marks |= {"d2_start": 6.0, "d2_end": 10.0}
    assert released_layout(marks) == {"forward": 5.0, "g_backward_step": 1.0, "d": 2.0, "d2": 2.0}
    unpaired = {"start": 0.0, "paired": False, "backward": [2.0, 8.0], "d2_start": 6.0, "d2_end": 10.0}
    assert released_layout(unpaired) == {"forward": 4.0, "g_backward_step": 4.0, "d": 0.0, "d2": 2.0}


def test_bench_layer_flops_add_up_to_the_flop_counter_and_the_option_drops_the_logged_reconstruction():
    from experiments.bench_mask_guided import iteration_flops

    tables = {}
    for log_every_step in (True, False):
        system = MaskGuidedSystem(**TINY, log_paired_terms_every_step=log_every_step)
        for paired in (True, False):
            table, total = iteration_flops(system, paired, batch=2)
            assert sum(sum(r.values()) for r in table.values()) == total
            tables[log_every_step, paired] = table
    assert tables[True, True] == tables[False, True]  # paired iterations are untouched
    logged, lean = tables[True, False], tables[False, False]
    assert "D" not in lean and logged["D"]["forward"] > 0  # no D forward on the graph-free reconstruction
    assert lean["G_m"]["forward"] == logged["G_m"]["forward"] / 2  # one G_m pass (the transfer), not two
    assert lean["G_m"]["weight"] == logged["G_m"]["weight"] > 0


def _two_iterations(precision: str, **options) -> tuple[MaskGuidedSystem, list[torch.dtype], dict[str, torch.Tensor]]:
    """A paired and an unpaired iteration under ``precision``; the dtypes G_m's first convolution produced and the
    generator's parameters before training."""
    images, labels = helen_tensors(0, 8)
    torch.manual_seed(0)
    system = MaskGuidedSystem(**TINY, **options)
    before = {n: p.detach().clone() for n, p in system.generator.named_parameters()}
    dtypes: list[torch.dtype] = []
    system.generator.fuse_conv.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    torch.manual_seed(1)
    _trainer(max_epochs=1, limit_train_batches=2, precision=precision).fit(system, _loader(images, labels))
    return system, dtypes, before


def test_bf16_mixed_channels_last_iterations_run_in_bf16_stay_finite_and_follow_the_fp32_update():
    options = dict(channels_last=True, adam_fused=True, log_paired_terms_every_step=False)
    fp32, fp32_dtypes, before = _two_iterations("32-true", **options)
    bf16, bf16_dtypes, bf16_before = _two_iterations("bf16-mixed", **options)
    assert set(fp32_dtypes) == {torch.float32} and set(bf16_dtypes) == {torch.bfloat16}
    assert int(bf16.iterations) == 2 and {"g/total", "d2/total"} <= set(bf16.last_loss_terms)
    assert all(torch.isfinite(v).all() for v in bf16.last_loss_terms.values())
    fp32_params, bf16_params = dict(fp32.generator.named_parameters()), dict(bf16.generator.named_parameters())
    steps = []
    for name, start in before.items():
        assert torch.equal(start, bf16_before[name])  # the same initialisation
        p = bf16_params[name]
        assert p.dtype == torch.float32 and torch.isfinite(p).all()  # the master weights stay fp32
        steps.append(((fp32_params[name] - start).flatten(), (p - start).flatten()))
    a, b = (torch.cat(x) for x in zip(*steps, strict=True))
    assert b.abs().sum() > 0
    # two Adam steps (about lr times the gradient's sign) go the same way in bf16 as in fp32
    assert F.cosine_similarity(a, b, dim=0) > 0.9


def test_bench_paths_add_bf16_with_channels_last_on_a_cpu_and_name_the_cpu():
    import argparse

    from experiments.bench_mask_guided import cpu_description, timed_paths

    args = argparse.Namespace(device="cpu", channels_last=False, adam_fused=True, cpu_bf16="on", paths=None)
    eager, fp32, bf16 = timed_paths(args)
    assert eager.options == {} and eager.precision == fp32.precision == "32-true"
    assert fp32.options == {"adam_fused": True, "log_paired_terms_every_step": False}
    assert bf16.precision == "bf16-mixed"
    assert bf16.options == {**fp32.options, "channels_last": True}

    def names(**changes):
        return [p.name for p in timed_paths(argparse.Namespace(**{**vars(args), **changes}))]

    assert names(cpu_bf16="off") == [eager.name, fp32.name]
    assert names(paths={0, 2}) == [eager.name, bf16.name]
    assert "oneDNN bf16" in cpu_description()
