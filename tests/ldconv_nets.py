"""Small LDConv networks for parity tests, with their attention and BatchNorm spread so a
mix-up of samples, kernels or channels shows in the output."""

import torch
from torch import nn

from ldnet.models.ldconv import DynamicConv2d


def spread(net: nn.Module) -> nn.Module:
    """At initialisation (and at T = 34) the kernel attention is near-uniform (every sample
    mixes the same kernel) and BatchNorm is the identity: a parity check would pass on almost
    anything. Large attention weights give logits far apart even after division by 34."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, DynamicConv2d):
                module.attention.fc1.weight.normal_(0, 1)
                module.attention.fc2.weight.normal_(0, 40)
                module.attention.fc2.bias.normal_(0, 20)
            elif isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()
