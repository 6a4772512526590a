r"""Writes ``golden.pt``: outputs, loss terms and gradients of the default
MGN / MGVAE configurations for fixed weights, inputs and noise.

It was run once, at commit de4d3f5 (before MGN was rebuilt on PyG's
operators), with ``python tests/golden/make_golden.py``;
``tests/models/test_golden.py`` loads the stored weights into the rebuilt
models and checks that they compute the same thing. The script uses the
constructor arguments of that commit, so it is kept as the record of how the
file was made, not to be re-run against later code.
"""
import os

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.utils import erdos_renyi_graph

from torch_geometric_mgvae import MGN, MGVAE

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (class, constructor kwargs). Channels: 4 in, 16 hidden, 8 latent.
CONFIGS = {
    'mgn': (MGN, dict(num_clusters=[4, 2, 1], feature_loss='mse')),
    'mgvae': (MGVAE, dict(num_clusters=[4, 2, 1])),
    'mgvae_graph_hier': (MGVAE, dict(num_clusters=[4, 2, 1],
                                     encoder_scope='graph',
                                     hierarchical_decoding=True,
                                     balanced=True, cluster_balance=5)),
    'mgvae_sampled': (MGVAE, dict(num_clusters=[3, 1], max_dense_pairs=0)),
    'mgvae_fixed': (MGVAE, dict(num_clusters=[3, 1], clustering='fixed')),
    'mgvae_order2': (MGVAE, dict(num_clusters=[3, 1], order=2,
                                 edge_channels=2, covariance='mrf',
                                 prior='learnable', max_nodes=13,
                                 global_decoder='second_order')),
    # (The MLP decoder's 400k weights would make the file large; it is a
    # module of its own, tested elsewhere.)
    'mgvae_random': (MGVAE, dict(num_clusters=[2, 1], random_features=2)),
}


def make_batch() -> Batch:
    graphs = []
    for i, n in enumerate((7, 13, 5, 10)):
        g = torch.Generator().manual_seed(100 + i)
        torch.manual_seed(100 + i)
        ei = erdos_renyi_graph(n, 0.35)
        x = torch.randn(n, 4, generator=g, dtype=torch.float64)
        attr = torch.nn.functional.one_hot(
            torch.randint(2, (ei.size(1), ), generator=g), 2).double()
        # Symmetric edge features (both directions of an edge alike).
        key = torch.minimum(ei[0], ei[1]) * n + torch.maximum(ei[0], ei[1])
        _, inv = torch.unique(key, return_inverse=True)
        attr = attr[inv]
        graphs.append(Data(x=x, edge_index=ei, edge_attr=attr, num_nodes=n))
    return Batch.from_data_list(graphs)


def fixed_clusters(batch: Batch):
    local = torch.arange(batch.num_nodes) % 3
    return [local, torch.zeros(batch.num_graphs * 3, dtype=torch.long)]


def summarize(t: torch.Tensor):
    r"""A gradient as it is, or for large ones its sum, squared norm and
    projection on a fixed random vector (keeps the file small)."""
    t = t.detach()
    if t.numel() <= 20000:
        return t.clone()
    v = torch.randn(t.numel(), generator=torch.Generator().manual_seed(7),
                    dtype=t.dtype)
    return torch.stack([t.sum(), (t**2).sum(), (t.reshape(-1) * v).sum()])


def run(name, model, data, noise=None, gen_seed=0):
    kw = {}
    if name == 'mgvae_fixed':
        kw['clusters'] = fixed_clusters(data)
    if getattr(model, 'edge_channels', 0):
        kw['edge_attr'] = data.edge_attr
    out = model(data.x, data.edge_index, batch=data.batch,
                num_graphs=data.num_graphs, noise=noise,
                generator=torch.Generator().manual_seed(gen_seed), **kw)
    return out


def main():
    data = make_batch()
    golden = {'data': data.to_dict()}
    for name, (cls, kw) in CONFIGS.items():
        torch.manual_seed(0)
        model = cls(4, 16, 8, **kw).double().train()
        out = run(name, model, data)
        terms = model.loss_terms(out, torch.Generator().manual_seed(1))
        total = sum(terms.values())
        model.zero_grad()
        total.backward()
        grads = {k: summarize(p.grad) for k, p in model.named_parameters()
                 if p.grad is not None}
        levels = []
        for lvl in out.levels:
            levels.append(dict(
                x=lvl.x.detach(), z=lvl.z.detach(),
                mu=None if lvl.mu is None else lvl.mu.detach(),
                logstd=None if lvl.logstd is None else lvl.logstd.detach(),
                edge_index=lvl.edge_index,
                edge_weight=None if lvl.edge_weight is None else
                lvl.edge_weight.detach(),
                batch=lvl.batch,
                cluster=None if lvl.cluster is None else
                lvl.cluster.cluster))
        model.eval()
        with torch.no_grad():
            out_eval = run(name, model, data)
            eval_terms = model.loss_terms(out_eval,
                                          torch.Generator().manual_seed(1))
        golden[name] = dict(
            kwargs=kw, noise=out.noise,
            # The weights are float32 values (initialised in float32, then
            # .double()), so storing them in float32 loses nothing.
            state={k: v.float() if torch.is_tensor(v) and
                   v.is_floating_point() else v
                   for k, v in model.state_dict().items()},
            levels=levels, terms={k: v.detach() for k, v in terms.items()},
            grads=grads,
            eval_z=[lvl.z for lvl in out_eval.levels],
            eval_terms={k: v for k, v in eval_terms.items()})
    torch.save(golden, os.path.join(HERE, 'golden.pt'))
    print({k: (len(v['levels']), float(sum(v['terms'].values())))
           for k, v in golden.items() if k != 'data'})


if __name__ == '__main__':
    main()
