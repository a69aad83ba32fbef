"""The attribute changes MagGAN is asked for at test time: single flips, STGAN's conflict rules, intensities.

Training targets are the batch's own attribute vectors shuffled, so they never ask for two hair colours at once.
At test time STGAN (and so MagGAN's evaluation, which reuses STGAN's protocol) fixes the target with
``check_attribute_conflict``: turning a hair colour on turns the other two off, and Bald and Bangs exclude each
other. ``rule="plain"`` is the literal single flip ``(1 − 2·att_s)·e_i`` of eq. (2), the MRE's edit.

- :func:`conflict_free_flip`: one attribute flipped, the conflict rules applied to the target.
- :func:`single_flip_changes`: all 13 single-attribute edits of a batch, (B, C, C), under either rule.
- :func:`attribute_change`: the change for a set of target values (the edit CLI and the editor), with
  MagGAN's ``intensity`` or STGAN's ``test_int``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from datamodules.labels import EDIT_ATTRIBUTES

#: STGAN's ``check_attribute_conflict`` restricted to the 13 edited attributes: an attribute turned on turns these
#: off in the target.
CONFLICTS: dict[str, tuple[str, ...]] = {
    "Bald": ("Bangs",),
    "Bangs": ("Bald",),
    "Black_Hair": ("Blond_Hair", "Brown_Hair"),
    "Blond_Hair": ("Black_Hair", "Brown_Hair"),
    "Brown_Hair": ("Black_Hair", "Blond_Hair"),
}
#: The synthetic world's consistency among the 13 edited attributes (``datamodules/synthetic.py``: ``Bald`` is
#: ``not has_hair``, a hair colour and Bangs need hair): STGAN's rules, plus Bald on turns the three hair colours
#: off and a hair colour on turns Bald off. Used by ``target_boost`` (training) and the ``"consistent"`` rule.
WORLD_CONFLICTS: dict[str, tuple[str, ...]] = {
    "Bald": ("Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair"),
    "Bangs": ("Bald",),
    "Black_Hair": ("Blond_Hair", "Brown_Hair", "Bald"),
    "Blond_Hair": ("Black_Hair", "Brown_Hair", "Bald"),
    "Brown_Hair": ("Black_Hair", "Blond_Hair", "Bald"),
}
FLIP_RULES = ("conflict_free", "plain", "consistent")
STGAN_THRES_INT = 0.5  # STGAN codes an attribute as (2·a − 1)·thres_int = ±0.5


def _check_rule(rule: str) -> None:
    if rule not in FLIP_RULES:
        raise ValueError(f"flip rule must be one of {', '.join(FLIP_RULES)}, got {rule!r}")


def rule_conflicts(rule: str) -> Mapping[str, tuple[str, ...]]:
    """The partners each rule turns off: STGAN's :data:`CONFLICTS`, the world's :data:`WORLD_CONFLICTS` or none."""
    _check_rule(rule)
    return {"conflict_free": CONFLICTS, "consistent": WORLD_CONFLICTS, "plain": {}}[rule]


def conflict_free_flip(att_source: Tensor, name: str, conflicts: Mapping[str, tuple[str, ...]] = CONFLICTS) -> Tensor:
    """``att_diff`` (B, 13) that flips ``name`` (``1 − att``) and, on the faces where it turns on, turns off the
    attributes of ``conflicts[name]`` (default STGAN's test targets; :data:`WORLD_CONFLICTS` for the
    ``"consistent"`` rule); a plain single flip is ``1 − 2·att`` on ``name`` alone."""
    target = att_source.clone()
    i = EDIT_ATTRIBUTES.index(name)
    target[:, i] = 1 - att_source[:, i]
    turned_on = target[:, i] > 0.5
    for other in conflicts.get(name, ()):
        target[turned_on, EDIT_ATTRIBUTES.index(other)] = 0
    return target - att_source


def single_flip_changes(att_source: Tensor, rule: str = "conflict_free") -> Tensor:
    """(B, C, C) whose ``[:, i]`` is the ``att_diff`` of edit ``i``: attribute ``i`` flipped, with STGAN's conflict
    rules (``"conflict_free"``), with the world's (``"consistent"``: Bald on also clears the hair colours) or alone
    (``"plain"``, ``diag(1 − 2·att_s)``, eq. 2)."""
    conflicts = rule_conflicts(rule)
    if rule == "plain":
        return torch.diag_embed(1.0 - 2.0 * att_source)
    return torch.stack([conflict_free_flip(att_source, name, conflicts) for name in EDIT_ATTRIBUTES], dim=1)


def attribute_change(
    att_source: Tensor,
    targets: Mapping[str, float],
    intensity: float = 1.0,
    *,
    rule: str = "conflict_free",
    test_int: float | None = None,
) -> Tensor:
    """``att_diff`` (B, 13) for the target values ``targets`` (name -> value); attributes not set stay 0.

    - The change of a set attribute is ``(target − source)·intensity`` (1: the training range, 0.5 half-way,
      > 1 exaggerates), or with ``test_int`` STGAN's test intensity exactly: its target ``(2·target − 1)·0.5`` is
      multiplied by ``test_int`` before the source ``(2·source − 1)·0.5`` is subtracted, so a flip changes by
      ``±(test_int + 1)/2`` (``test_int`` 1 = ``intensity`` 1; STGAN's paper numbers used 2, a change of ±1.5).
    - ``rule="conflict_free"``: a set attribute whose target is on (> 0.5) turns off its :data:`CONFLICTS`
      partners that ``targets`` does not set; their change is ``0 − source`` whatever the intensity (STGAN
      scales only the edited attribute too); ``"consistent"`` the same with :data:`WORLD_CONFLICTS`. ``"plain"``:
      only the set attributes change.
    """
    conflicts = rule_conflicts(rule)
    target = att_source.clone()
    for name, value in targets.items():
        target[:, EDIT_ATTRIBUTES.index(name)] = value
    if rule != "plain":
        for name, value in targets.items():
            if value > 0.5:
                for other in conflicts.get(name, ()):
                    if other not in targets:
                        target[:, EDIT_ATTRIBUTES.index(other)] = 0
    att_diff = target - att_source
    for name, value in targets.items():
        i = EDIT_ATTRIBUTES.index(name)
        if test_int is None:
            att_diff[:, i] = att_diff[:, i] * intensity
        else:
            source = (2 * att_source[:, i] - 1) * STGAN_THRES_INT
            att_diff[:, i] = (2 * value - 1) * STGAN_THRES_INT * test_int - source
    return att_diff
