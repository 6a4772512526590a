r"""Pictures: generated vs real graphs, training curves (written
atomically, :func:`save_figure`)."""
from typing import Any, Dict, List, Optional, Sequence

from torch_geometric.data import Data

from torch_geometric_mgvae.experiments.io import atomic_write


def save_figure(fig: Any, path: str, dpi: int = 110) -> str:
    r"""Saves a Matplotlib figure to :obj:`path` atomically (the format
    follows the extension, default PNG) and closes it."""
    import os

    import matplotlib.pyplot as plt
    fmt = os.path.splitext(path)[1][1:].lower() or 'png'
    try:
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
    finally:
        plt.close(fig)
    return path


def _nx(g: Data):
    import networkx as nx
    G = nx.Graph()
    G.add_nodes_from(range(int(g.num_nodes)))
    G.add_edges_from((int(i), int(j)) for i, j in g.edge_index.t().tolist()
                     if i != j)
    return G


def plot_graph_grid(rows: Dict[str, Sequence[Data]], path: str,
                    per_row: int = 8, title: Optional[str] = None,
                    seed: int = 0) -> str:
    r"""Draws a grid of graphs, one row per named set (e.g.
    :obj:`{"generated": [...], "test": [...]}`), and saves it to
    :obj:`path` (PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import networkx as nx

    names = list(rows)
    fig, axes = plt.subplots(len(names), per_row,
                             figsize=(1.8 * per_row, 1.9 * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        graphs = list(rows[name])[:per_row]
        for c in range(per_row):
            ax = axes[r][c]
            ax.set_axis_off()
            if c >= len(graphs):
                continue
            G = _nx(graphs[c])
            pos = nx.spring_layout(G, seed=seed)
            nx.draw_networkx(G, pos, ax=ax, node_size=18, with_labels=False,
                             width=0.6, node_color='tab:blue' if r else
                             'tab:orange')
            if c == 0:
                ax.set_title(name, fontsize=9, loc='left')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_curves(history: List[Dict[str, float]], path: str,
                keys: Optional[Sequence[str]] = None) -> str:
    r"""Plots the per-epoch loss terms of a training run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = keys or [k for k in history[0] if k != 'epoch']
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        ax.plot([h[k] for h in history], label=k)
    ax.set_xlabel('epoch')
    ax.set_ylabel('loss per graph')
    ax.set_yscale('symlog')
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
