import torch
from torch_geometric.loader import DataLoader

from torch_geometric_mgvae import MGVAE
from torch_geometric_mgvae.datasets import read_graph_list
from torch_geometric_mgvae.train import (evaluate, train_epoch,
                                         with_structural_features)


def test_short_training_on_community_small_lowers_the_loss(shared_data):
    graphs = read_graph_list(f'{shared_data}/community_small')
    assert len(graphs) == 100
    train = with_structural_features(graphs[20:])
    torch.manual_seed(0)
    loader = DataLoader(train, batch_size=20, shuffle=True)
    model = MGVAE(train[0].num_features, 32, 8, [2, 1])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    eval_loader = DataLoader(train, batch_size=80)
    before = evaluate(model, eval_loader)['loss']
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        stats = train_epoch(model, loader, opt, generator=gen)
    after = evaluate(model, eval_loader)['loss']
    assert after < 0.8 * before
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
