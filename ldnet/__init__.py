"""LDNet: lightweight dynamic-convolution network for top-down 2D human pose estimation."""

__version__ = "0.1.0"
