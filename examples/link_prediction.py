# Link prediction on Cora and Citeseer with MGVAE (Hy & Kondor, Sec. 5.1 /
# D.1), next to PyG's VGAE trained on the same splits:
#
#   python examples/link_prediction.py --dataset Cora --raw ../shared/data \
#       --seeds 5 --epochs 300 --levels 3
#
# Every seed draws an 85/5/10 RandomLinkSplit with as many sampled
# non-edges; the epoch of every model is selected on the validation AUC and
# the test AUC/AP at that epoch are reported. `mgvae link-pred` runs the
# same experiment for several variants with progress bars and writes the
# records to --results (default OUT/link_prediction.json).
import argparse
import os

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402

from torch_geometric_mgvae.experiments.link_prediction import (  # noqa: E402
    MGVAELinkModel,
    VGAEBaseline,
    add_arguments,
    cluster_size_stats,
    clusters_per_level,
    level_clusters,
    load_dataset,
    method_name,
    resolve_args,
    split_edges,
    train_model,
)

parser = argparse.ArgumentParser(description=__doc__)
add_arguments(parser)
args = resolve_args(parser.parse_args())
torch.set_num_threads(args.threads)

for name in args.dataset:
    # Row-normalised bag-of-words features, raw files from --raw if given.
    data = load_dataset(name, args.root, args.raw)
    for seed in range(args.seeds):
        # A new split per seed; no held-out edge enters the training graph.
        train, val, test = split_edges(data, seed)

        torch.manual_seed(seed)
        vgae = VGAEBaseline(data.num_features)
        res = train_model(vgae, train, val, test, args.epochs, args.lr,
                          args.eval_every)
        print(f'{name} seed {seed} VGAE: AUC {res["auc"]:.4f}, '
              f'AP {res["ap"]:.4f}')

        for L in args.levels:
            K = clusters_per_level(L)  # [64, 16, 4], [128, ..., 2] or [1]
            # L = 0: one model without hierarchy (no clusters to vary).
            for variant in (['flat'] if L == 0 else args.variants):
                torch.manual_seed(seed)
                # Fixed clusterings are computed on the training graph.
                clusters = level_clusters(train, variant, K, seed)
                model = MGVAELinkModel(data.num_features, K, variant, args,
                                       clusters)
                res = train_model(model, train, val, test, args.epochs,
                                  args.lr, args.eval_every)
                stats = cluster_size_stats(
                    model.finest_clusters(train, training=False), K[0])
                print(f'{name} seed {seed} {method_name(variant, L)}: '
                      f'AUC {res["auc"]:.4f}, AP {res["ap"]:.4f}, '
                      f'finest clusters KL to uniform '
                      f'{stats["cluster_kl"]:.3f}')
