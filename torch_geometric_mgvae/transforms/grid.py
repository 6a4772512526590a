r"""Images as grid graphs (paper D.6): one node per pixel, edges between
the 4-neighbours, the intensities as node features and the integer pixel
position as :obj:`pos`; and back from node values to images."""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data


def grid_graph(height: int, width: int,
               device: Optional[torch.device] = None) -> Tuple[Tensor, Tensor]:
    r"""The 4-neighbour grid graph of an image of size
    :math:`H \times W`: node :math:`i = rW + c` is the pixel in row
    :math:`r` and column :math:`c`; it is joined to the pixels above,
    below, left and right of it (both edge directions, no self loops), so
    corners have degree 2, the other border pixels 3 and inner pixels 4.
    Unlike :func:`torch_geometric.utils.grid` (8 neighbours, self loops,
    float :math:`(x, y)` positions), the positions are the integer
    :math:`(r, c)` that :func:`~torch_geometric_mgvae.nn.grid_clustering`
    reads.

    Returns:
        :obj:`(edge_index, pos)`: :math:`(2, 2(H(W-1) + (H-1)W))` edges
        sorted by source then target, and :math:`(HW, 2)` integer
        positions :math:`(r, c)`.
    """
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"A grid needs height and width >= 1 (got "
                         f"{height} x {width})")
    H, W = int(height), int(width)
    idx = torch.arange(H * W, device=device).view(H, W)
    pairs = [
        (idx[:, :-1], idx[:, 1:]),  # right
        (idx[:, 1:], idx[:, :-1]),  # left
        (idx[:-1, :], idx[1:, :]),  # down
        (idx[1:, :], idx[:-1, :]),  # up
    ]
    src = torch.cat([a.reshape(-1) for a, _ in pairs])
    dst = torch.cat([b.reshape(-1) for _, b in pairs])
    order = torch.argsort(src * (H * W) + dst)
    edge_index = torch.stack([src[order], dst[order]])
    pos = torch.stack(torch.meshgrid(torch.arange(H, device=device),
                                     torch.arange(W, device=device),
                                     indexing='ij'), dim=-1).view(-1, 2)
    return edge_index, pos


def image_to_graph(image: Tensor, **kwargs) -> Data:
    r"""An image :math:`(C, H, W)` or :math:`(H, W)` as a
    :func:`grid_graph` :class:`~torch_geometric.data.Data` with the
    :math:`C` channel values of every pixel as :obj:`x` :math:`(HW, C)`
    (floats; integer images are kept as they are, e.g. :obj:`uint8`
    intensities: divide them first), the integer positions :obj:`pos` and
    any further attributes given as keywords (e.g. :obj:`y`)."""
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3:
        raise ValueError(f"Expected an image of shape (C, H, W) or (H, W) "
                         f"(got {tuple(image.shape)})")
    C, H, W = image.shape
    edge_index, pos = grid_graph(H, W, image.device)
    x = image.reshape(C, H * W).t().contiguous()
    return Data(x=x, edge_index=edge_index, pos=pos, **kwargs)


def graph_to_image(x: Tensor, pos: Tensor, batch: Optional[Tensor] = None,
                   num_graphs: Optional[int] = None,
                   size: Optional[Tuple[int, int]] = None) -> Tensor:
    r"""The node values :obj:`x` :math:`(N, C)` of a batch of grid graphs
    as images :math:`(B, C, H, W)`: node :math:`i` of graph
    :obj:`batch[i]` goes to pixel :obj:`pos[i]`, wherever it lies in the
    node order (so the result does not depend on the order of the nodes);
    pixels without a node are 0.

    Args:
        x (torch.Tensor): Node values :math:`(N, C)` or :math:`(N)`.
        pos (torch.Tensor): Integer positions :math:`(r, c)`, :math:`(N, 2)`.
        batch (torch.Tensor, optional): The graph of every node
            (default: one graph).
        num_graphs (int, optional): :math:`B` (default:
            :obj:`batch.max() + 1`).
        size (tuple, optional): :math:`(H, W)` (default: the largest
            position plus one).
    """
    if x.dim() == 1:
        x = x.view(-1, 1)
    if pos.dim() != 2 or pos.size(1) != 2 or pos.size(0) != x.size(0):
        raise ValueError(f"'pos' must hold one (row, col) per node, shape "
                         f"({x.size(0)}, 2) (got {tuple(pos.shape)})")
    pos = pos.long()
    if batch is None:
        batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    if num_graphs is None:
        num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    if size is None:
        size = ((int(pos[:, 0].max()) + 1, int(pos[:, 1].max()) + 1)
                if pos.numel() else (0, 0))
    H, W = size
    if pos.numel() and (int(pos.min()) < 0 or int(pos[:, 0].max()) >= H
                        or int(pos[:, 1].max()) >= W):
        raise ValueError(f"'pos' lies outside the {H} x {W} image")
    out = x.new_zeros(num_graphs, H * W, x.size(1))
    out[batch, pos[:, 0] * W + pos[:, 1]] = x
    return out.view(num_graphs, H, W, x.size(1)).permute(0, 3, 1, 2)
