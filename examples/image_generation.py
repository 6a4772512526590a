# The image generation experiment of Hy & Kondor's MGVAE (appendix D.6,
# Table 11): MNIST digits padded to 32x32 as 4-neighbour grid graphs, an
# MGVAE with the fixed quadtree 32 -> 16 -> 8, one latent and one DCGAN
# decoder per resolution, and FID per resolution against the test set.
#
#   python examples/image_generation.py --root data/mnist --epochs 3 \
#       --fid-samples 500
#
# The raw files (MNIST idx files, or mnist_train_reconstructed.npz for the
# training split) lie in ROOT/raw or are copied there from --data. This
# script shows the MGVAE alone as a plain PyG loop; `mgvae images` runs the
# whole experiment with the conv VAE baseline and the train-set floor in
# the same table, progress bars, checkpoints, pictures and --resume.
import argparse
import os
import time

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402
from torch_geometric.loader import DataLoader  # noqa: E402

from torch_geometric_mgvae.experiments.images import (  # noqa: E402
    DATASET,
    TASK,
    FIDEvaluator,
    add_arguments,
    build_model,
    free_bits,
    load_data,
    method_name,
    pick_device,
    resolve_args,
)
from torch_geometric_mgvae.experiments.results import (  # noqa: E402
    record,
    write_records,
)

parser = argparse.ArgumentParser(
    description='MGVAE on MNIST grid graphs (paper D.6): FID per resolution')
add_arguments(parser)
args = resolve_args(parser.parse_args())
torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
torch.manual_seed(args.seed)
device = pick_device(args.device)

# MNISTGraphs: Data(x=[1024, 1], edge_index=[2, 3968], pos=[1024, 2], y)
train_set, test_set = load_data(args)
loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
# ImageMGVAE: quadtree clusters from pos, global MGNConv encoders, Deep Sets
# pooler per 2x2 cluster, a latent and a DCGAN decoder per resolution.
model = build_model(args, 'mgvae').to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)


def train() -> float:
    model.train()
    total = 0.0
    for batch in loader:
        batch = batch.to(device)
        optimizer.zero_grad()
        out = model(batch)  # every level: graphs, latents, decoded images
        # recon_32, kl_32, recon_16, ...; free_bits_16 = max(0, F - kl_16)
        terms = model.loss_terms(out, free_bits=free_bits(args))
        loss = sum(args.kl_weight * v if k.startswith(('kl', 'free_bits'))
                   else v for k, v in terms.items())
        loss.backward()
        optimizer.step()
        total += loss.item() * batch.num_graphs
    return total / len(train_set)


@torch.no_grad()
def test() -> dict:
    # N samples per resolution from N(0, I) vs N test images zoomed out.
    model.eval()
    fid = FIDEvaluator(args.fid_cache, args.fid_samples, args.seed,
                       args.fid_batch_size, device, not args.no_progress)
    images = test_set.images
    out = {}
    for side in (32, 16, 8):
        ref = fid.reference('test', images, side)
        gen = torch.Generator().manual_seed(20_000 + args.seed + side)
        samples = model.sample(args.fid_samples, side, generator=gen)
        out[side] = fid.fid(samples, ref, f'{side}x{side}')
    return out


seconds = []
for epoch in range(1, args.epochs + 1):
    t0 = time.perf_counter()
    loss = train()
    seconds.append(time.perf_counter() - t0)
    print(f'Epoch: {epoch:03d}, Loss: {loss:.4f}, Time: {seconds[-1]:.1f}s')

if not args.no_fid:
    fids = test()
    print(', '.join(f'FID {s}x{s}: {v:.2f}' for s, v in fids.items()))
    # Records in --results (default OUT/image_generation.json).
    write_records(args.results, [
        record(TASK, DATASET, method_name(args, 'mgvae') + ' (example)',
               f'FID_{s}x{s}', v, n=args.fid_samples,
               protocol=f'examples/image_generation.py, {args.epochs} '
               f'epochs, {sum(seconds) / len(seconds):.0f} s per epoch')
        for s, v in fids.items()])
    print(f'wrote {args.results}')
