"""PortraitGAN (Duan, Guo, Kuo 2020): landmark- and modality-conditioned cycle GAN with multi-level
adversarial supervision and a Gram texture loss."""
