"""MaskGAN's speed options change only what they say: the gradients of one DMN step against a hand-made
reference (D's from its loss on the real and the detached generated batch; the generator's from Eq. 6 against
D before or after D's update), and fused Adam's update against the per-tensor loop."""

import copy

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from datamodules.labels import label_to_onehot
from portrait_models.losses import discriminator_loss, feature_matching_loss, generator_loss
from portrait_models.maskgan.module import MaskGAN

TINY = dict(
    image_size=32, ngf=4, n_downsample=2, n_blocks=1, style_channels=4, style_downsample=3, ndf=4, ebst=False,
    vgg_pretrained=False, vgg_layers=1, lambda_l1=3.0, dmn_steps=1, lr_decay=False, lr=1e-3,
)  # fmt: skip


def batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1
    labels = torch.randint(0, 19, (2, 32, 32), generator=generator)
    return images, labels


def one_step(model, epochs=1, ckpt_path=None):
    """Train ``model`` on the one batch for ``epochs`` epochs (one batch each), resuming from ``ckpt_path``."""
    images, labels = batch()
    items = [{"image": x, "label": y} for x, y in zip(images, labels)]
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=-1, max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader(items, batch_size=2, shuffle=False), ckpt_path=ckpt_path)
    return model


def reference(model, order):
    """Gradients of D's and the generator's loss for one batch, computed by hand. ``order``: ``"after"``
    matches the generator against D after one Adam step on D's loss (default), ``"reuse"`` the same but with
    the feature-matching targets from D before that step, ``"before"`` against D before it (released code)."""
    images, labels = batch()
    onehot = label_to_onehot(labels, 19).float()
    hp = model.hparams
    fake = model.dmn(onehot, onehot, images)
    d = model.discriminator
    real_before = d(onehot, images)
    real_term, fake_term = discriminator_loss(hp.gan_loss, real_before, d(onehot, fake.detach()))
    d_grads = torch.autograd.grad(0.5 * (real_term + fake_term), list(d.parameters()))
    if order != "before":
        opt = torch.optim.Adam(d.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        for p, g in zip(d.parameters(), d_grads):
            p.grad = g
        opt.step()
    with torch.no_grad():
        real_features = d(onehot, images) if order == "after" else real_before
    fake_features = d(onehot, fake)
    loss_g = (
        generator_loss(hp.gan_loss, fake_features)
        + hp.lambda_feat * feature_matching_loss(fake_features, real_features)
        + hp.lambda_percept * model.perceptual(fake, images)
        + hp.lambda_l1 * F.l1_loss(fake, images)
    )
    g_grads = torch.autograd.grad(loss_g, list(model.dmn.parameters()))
    return d_grads, g_grads


def relative_error(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def assert_close(grads, params):
    """All of a network's gradients within 1e-3 of the reference in relative norm (float reassociation: the
    batched D call; biases before instance norm have a true gradient of zero and carry only rounding)."""
    params = list(params)
    assert all(p.grad is not None for p in params)
    assert relative_error(flat([p.grad for p in params]), flat(grads)) < 1e-3


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


@pytest.mark.parametrize(
    "options, order",
    [({}, "after"), ({"reuse_real_features": True}, "reuse"), ({"shared_d_forward": True}, "before")],
)
def test_one_dmn_step_has_the_reference_gradients(options, order):
    pl.seed_everything(0, verbose=False)
    model = MaskGAN(**TINY, **options)
    d_grads, g_grads = reference(copy.deepcopy(model), order)
    one_step(model)
    assert_close(d_grads, model.discriminator.parameters())
    assert_close(g_grads, model.dmn.parameters())


def test_shared_d_forward_under_ddp_has_the_same_gradients(monkeypatch):
    """With more than one process the generator's D forward runs separately (D frozen): same numbers."""
    monkeypatch.setattr("portrait_models.maskgan.module.world", lambda: (2, 0))
    pl.seed_everything(0, verbose=False)
    model = MaskGAN(**TINY, shared_d_forward=True)
    d_grads, g_grads = reference(copy.deepcopy(model), "before")
    one_step(model)
    assert_close(d_grads, model.discriminator.parameters())
    assert_close(g_grads, model.dmn.parameters())


def test_shared_d_forward_differs_from_the_sequential_update():
    """The three orders are really different updates (else the test above could not tell them apart)."""
    pl.seed_everything(0, verbose=False)
    model = MaskGAN(**TINY)
    grads = {order: flat(reference(copy.deepcopy(model), order)[1]) for order in ("after", "reuse", "before")}
    assert relative_error(grads["after"], grads["before"]) > 1e-2
    assert relative_error(grads["reuse"], grads["before"]) > 1e-2
    assert relative_error(grads["reuse"], grads["after"]) > 1e-2


def test_fused_adam_makes_the_loop_adam_update():
    """The fused optimizer's step equals the per-tensor loop's on the same gradients (its own, kept in .grad)."""
    pl.seed_everything(0, verbose=False)
    model = MaskGAN(**TINY, adam_fused=True)
    start = [p.detach().clone() for p in model.dmn.parameters()]
    one_step(model)
    assert all(opt.defaults["fused"] for opt in model.trainer.optimizers)
    params = list(model.dmn.parameters())
    loop = [s.clone().requires_grad_(True) for s in start]
    for q, p in zip(loop, params, strict=True):
        q.grad = p.grad.clone()
    torch.optim.Adam(loop, lr=model.hparams.lr, betas=tuple(model.hparams.betas), foreach=False).step()
    assert all(not torch.equal(p.detach(), s) for p, s in zip(params, start, strict=True) if p.grad.abs().max() > 0)
    for q, p in zip(loop, params, strict=True):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-7)


def _conv_weight(network):
    """A conv weight whose channels-last and contiguous layouts differ (more than one channel and pixel)."""
    return next(m.weight for m in network.modules() if isinstance(m, torch.nn.Conv2d) and min(m.weight.shape[1:]) > 1)


def _render(model):
    """The model's (not the EMA's) reconstruction of the test batch, inputs in the model's layout."""
    images, labels = batch()
    images, _, onehot = model._inputs({"image": images, "label": labels})
    return model.render(onehot, onehot, images, ema=False)


FAST = {"shared_d_forward": True, "adam_fused": True}


@pytest.mark.parametrize("options", [{}, FAST, {**FAST, "channels_last_d": False}])
def test_channels_last_step_gives_the_contiguous_numbers(options):
    """channels_last changes the memory layout only: one DMN step from the same init gives the contiguous
    model's losses, D and generator gradients and updated generator to fp32 rounding (other summation order);
    with ``channels_last_d=False`` D, its gradients and its Adam moments stay contiguous."""
    models, before = {}, {}
    for channels_last in (False, True):
        pl.seed_everything(0, verbose=False)
        model = MaskGAN(**TINY, **options, channels_last=channels_last)
        before[channels_last] = _render(model)
        models[channels_last] = one_step(model)
    torch.testing.assert_close(before[True], before[False], rtol=1e-5, atol=1e-6)
    weight = _conv_weight(models[True].dmn)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert weight.grad.is_contiguous(memory_format=torch.channels_last)  # the layout really was channels-last
    assert _render(models[True]).is_contiguous(memory_format=torch.channels_last)
    d_weight = _conv_weight(models[True].discriminator)
    d_channels_last = options.get("channels_last_d", True)
    for t in (d_weight, d_weight.grad, models[True].named_optimizers()["d"].optimizer.state[d_weight]["exp_avg"]):
        assert t.is_contiguous(memory_format=torch.channels_last) == d_channels_last
        assert t.is_contiguous() != d_channels_last
    losses = {k: {n: v.item() for n, v in m.trainer.callback_metrics.items()} for k, m in models.items()}
    assert losses[True].keys() == losses[False].keys() and len(losses[True]) >= 8
    for name, value in losses[False].items():
        assert losses[True][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    for net in ("dmn", "discriminator"):
        plain, cl = (list(getattr(models[k], net).parameters()) for k in (False, True))
        assert relative_error(flat([p.grad for p in cl]), flat([p.grad for p in plain])) < 1e-5, net
    # Adam's update of a near-zero gradient is ~lr with the sign of its rounding, so the two updated models
    # differ by more than the gradients do: measured 1.2e-4 (default order) and 0 of what the step changed
    after = {k: _render(m) for k, m in models.items()}
    change = (after[False] - before[False]).norm()
    assert (after[True] - after[False]).norm() < 1e-3 * change, ((after[True] - after[False]).norm(), change)


def test_channels_last_checkpoint_round_trips_and_resumes_in_either_layout(tmp_path):
    """A channels-last checkpoint loads with ``weights_only=True`` strictly into either layout, and a resumed
    run steps on the same Adam moments in either layout (fused Adam included: its CPU kernel walks the moments
    as flat buffers, so moments left in the checkpoint's strides would pair the wrong elements)."""
    options = dict(TINY, dmn_steps=2, shared_d_forward=True, adam_fused=True)
    pl.seed_everything(0, verbose=False)
    model = one_step(MaskGAN(**options, channels_last=True))
    path = tmp_path / "cl.ckpt"
    model.trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["channels_last"] is True
    moments = [s["exp_avg"] for s in saved["optimizer_states"][0]["state"].values() if s["exp_avg"].dim() == 4]
    assert any(not m.is_contiguous() for m in moments)  # the saved moments are in channels-last strides
    expected = _render(model)
    resumed = {}
    for channels_last in (True, False):
        fresh = MaskGAN(**{**saved["hyper_parameters"], "channels_last": channels_last})
        fresh.load_state_dict(saved["state_dict"], strict=True)
        got = _render(fresh)
        assert torch.equal(got, expected) if channels_last else torch.allclose(got, expected, atol=1e-5)
        fresh = one_step(MaskGAN(**{**saved["hyper_parameters"], "channels_last": channels_last}), 2, path)
        trainer = fresh.trainer
        assert int(fresh.batches_seen) == 2
        opt_g = trainer.optimizers[0]
        assert opt_g.defaults["fused"]
        moments = [opt_g.state[p]["exp_avg"] for p in fresh.dmn.parameters()]
        assert all(m.stride() == p.stride() for m, p in zip(moments, fresh.dmn.parameters(), strict=True))
        resumed[channels_last] = moments
    cl_moments, plain_moments = resumed[True], resumed[False]
    # measured: 3e-4 (the second batch's gradients in the two layouts); 1.17 with the moments left in the
    # checkpoint's strides (the fused kernel pairing a moment with another element's gradient)
    assert relative_error(flat(plain_moments), flat(cl_moments)) < 1e-2


@pytest.mark.slow  # two one-batch Lightning fits: ~1 min on a loaded 2-core machine
def test_bench_flop_count_shows_what_shared_d_forward_saves():
    """``make bench-maskgan``'s FLOP column: shared_d_forward saves exactly the generator step's two D forwards
    (on the generated and the real batch) and nothing else; every other FLOP of the step stays."""
    import argparse

    from torch.utils.flop_counter import FlopCounterMode

    from experiments.bench_maskgan import FAST as fast_options
    from experiments.bench_maskgan import PathSpec, _Path

    args = argparse.Namespace(device="cpu", ndf=4, vgg_layers=1)
    default, fast = (
        _Path(PathSpec(name, options), args, 32, 2, 4) for name, options in (("d", ()), ("f", fast_options))
    )
    for path in (default, fast):
        path.count_flops()
    images, labels = batch()
    with FlopCounterMode(display=False) as counter:
        default.model.discriminator(label_to_onehot(labels, 19).float(), images)
    assert fast.gflop < default.gflop
    assert (default.gflop - fast.gflop) * 1e9 == pytest.approx(2 * counter.get_total_flops(), rel=1e-9)
