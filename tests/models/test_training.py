import torch
from torch_geometric.loader import DataLoader

from torch_geometric_mgvae import MGVAE
from torch_geometric_mgvae.datasets import read_graph_list
from torch_geometric_mgvae.experiments.train import (
    structural_transform,
    train_epoch,
    weighted_loss,
)


@torch.no_grad()
def elbo_loss(model, batch):
    # The trained objective (stochastic ELBO), with the same noise each time.
    model.train()
    gen = torch.Generator().manual_seed(0)
    out = model(batch.x, batch.edge_index, batch=batch.batch,
                num_graphs=batch.num_graphs, generator=gen)
    return weighted_loss(model.loss_terms(out, gen)).item()


def test_short_training_on_community_small_lowers_the_loss(shared_data):
    graphs = read_graph_list(f'{shared_data}/community_small')
    assert len(graphs) == 100
    features = structural_transform()
    train = [features(g) for g in graphs[20:]]
    torch.manual_seed(0)
    loader = DataLoader(train, batch_size=20, shuffle=True)
    model = MGVAE(train[0].num_features, 32, 8, [2, 1], random_features=4)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    full = next(iter(DataLoader(train, batch_size=80)))
    before = elbo_loss(model, full)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        stats = train_epoch(model, loader, opt, generator=gen)
    after = elbo_loss(model, full)
    assert after < 0.8 * before
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
