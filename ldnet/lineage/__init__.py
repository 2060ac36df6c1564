"""Weights of the HRNet lineage: official HRNet and MMPose checkpoints mapped onto
``hrnet_w32``, the ImageNet backbone, and the catalogue of public checkpoints."""
