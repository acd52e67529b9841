"""PIP-Net's head on frozen tokens (Nauta et al., CVPR 2023): `losses` (alignment, tanh, classification), `method`."""
