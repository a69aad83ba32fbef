"""Mask-guided portrait editing (Gu et al., CVPR 2019).

Pure tensor functions (centres, crops, label growth, placement) live in
:mod:`portrait_models.mask_guided.components`, networks in :mod:`portrait_models.mask_guided.networks`.
"""
