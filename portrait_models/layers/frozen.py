"""A wrapper for fixed pretrained networks (VGG, face parser, ArcFace, Inception) inside trainable models.

``FrozenModule(net)``:

- sets ``requires_grad_(False)`` on every parameter of ``net``;
- stays in eval mode: ``train(True)`` on it (or on any parent, which Lightning calls every epoch) is ignored;
- is left out of checkpoints: its tensors are dropped from ``state_dict()`` of any module that contains it,
  and ``load_state_dict(strict=True)`` of a parent does not report them missing — the wrapped network keeps
  the weights it was built with (a checkpoint that does carry them is ignored for them), so the pretrained
  file is the single source of its weights and checkpoints do not grow by its size.

It is still a registered submodule, so ``.to(device)``, ``.half()`` and Lightning's device placement move it
with its owner, and it is visible in model summaries (as non-trainable parameters).
"""

from __future__ import annotations

from typing import Any

from torch import nn


def _drop_frozen_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _supply_frozen_keys(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    assert isinstance(module, FrozenModule)
    state_dict.update(module.module.state_dict(prefix=prefix + "module.", keep_vars=True))


class FrozenModule(nn.Module):
    """Wraps ``module`` as a fixed feature extractor; ``forward`` calls it unchanged (see module doc)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.requires_grad_(False).eval()
        self.register_state_dict_post_hook(_drop_frozen_keys)
        self.register_load_state_dict_pre_hook(_supply_frozen_keys)

    def train(self, mode: bool = True) -> FrozenModule:
        """Always eval: the wrapped network has fixed statistics and no dropout at use."""
        return super().train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)
