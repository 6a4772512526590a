r"""Image decoders of the image experiment (paper D.6)."""
import math

import torch
from torch import Tensor

from torch_geometric_mgvae.nn.checks import check_int


class DCGANDecoder(torch.nn.Module):
    r"""The generator network of DCGAN from the `"Unsupervised
    Representation Learning with Deep Convolutional Generative Adversarial
    Networks" <https://arxiv.org/abs/1511.06434>`_ paper, the global decoder
    :math:`\mathbf{d}^{(\ell)}` of the image experiment of MGVAE (D.6): a
    latent vector :math:`\mathbf{z} \in \mathbb{R}^{d_z}` becomes a
    :math:`4 \times 4` map by a transposed convolution, then every
    transposed convolution (kernel 4, stride 2) doubles the side, with batch
    normalisation and ReLU in between, the channels halving from
    :math:`c \cdot 2^{k-1}` to :math:`c`, until the image of side
    :math:`S = 4 \cdot 2^k`. Returns logits (the intensities are their
    sigmoid; DCGAN's final :math:`\tanh` is the same map up to scale).

    Args:
        latent_channels (int): Size :math:`d_z` of the latent vector.
        out_size (int): Side :math:`S` of the image, :math:`4 \cdot 2^k`
            with :math:`k \geq 0`.
        channels (int): Channels :math:`c` of the last hidden map.
            (default: :obj:`64`)
        out_channels (int): Image channels. (default: :obj:`1`)

    Shapes:
        - **input:** latents :math:`(B, d_z)`
        - **output:** logits :math:`(B, C_{out}, S, S)`
    """
    def __init__(self, latent_channels: int, out_size: int,
                 channels: int = 64, out_channels: int = 1):
        super().__init__()
        k = int(round(math.log2(out_size / 4))) if out_size >= 4 else -1
        if k < 0 or 4 * 2**k != out_size:
            raise ValueError(f"'out_size' must be 4 * 2^k (4, 8, 16, 32, "
                             f"...) (got {out_size})")
        check_int('latent_channels', latent_channels)
        check_int('channels', channels)
        check_int('out_channels', out_channels)
        self.latent_channels = latent_channels
        self.out_size = out_size
        self.channels = channels
        self.out_channels = out_channels
        widths = [channels * 2**i for i in reversed(range(k))]  # [.., 2c, c]
        layers = []
        if k == 0:
            layers.append(torch.nn.ConvTranspose2d(latent_channels,
                                                   out_channels, 4, 1, 0))
        else:
            layers += [
                torch.nn.ConvTranspose2d(latent_channels, widths[0], 4, 1, 0,
                                         bias=False),
                torch.nn.BatchNorm2d(widths[0]),
                torch.nn.ReLU(),
            ]
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [
                    torch.nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False),
                    torch.nn.BatchNorm2d(b),
                    torch.nn.ReLU(),
                ]
            layers.append(torch.nn.ConvTranspose2d(widths[-1], out_channels,
                                                   4, 2, 1))
        self.net = torch.nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.net:
            if hasattr(m, 'reset_parameters'):
                m.reset_parameters()

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.size(1) != self.latent_channels:
            raise ValueError(f"Expected latents of shape (B, "
                             f"{self.latent_channels}) (got "
                             f"{tuple(z.shape)})")
        return self.net(z.view(z.size(0), -1, 1, 1))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.latent_channels}, '
                f'out_size={self.out_size}, channels={self.channels})')
