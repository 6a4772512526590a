import csv
import gzip
import json
import os
import os.path as osp
import time

import pytest
import torch

import torch_geometric_mgvae.datasets.base as base
import torch_geometric_mgvae.datasets.molecules as molecules
from torch_geometric_mgvae.chem import (
    QM9_ATOMS,
    ZINC_ATOMS,
    canonical_smiles,
    data_to_mol,
    mol_to_smiles,
)
from torch_geometric_mgvae.datasets import (
    MOSES,
    QM9_TARGETS,
    QM9Molecules,
    ZINC12k,
    molecule_dataset_stats,
    penalized_logp,
)

pytest.importorskip('rdkit')

NUM_QM9_ROWS = 60
ABSENT_ID = 133_884  # a GDB id far beyond the slice


def _read_rows(path, n=None):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rt', newline='') as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = []
        for row in reader:
            if n is not None and len(rows) >= n:
                break
            rows.append(row)
    return header, rows


def _write_rows(path, header, rows):
    os.makedirs(osp.dirname(path), exist_ok=True)
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'wt', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def small_qm9_root(folder, n: int) -> str:
    r"""A QM9 root under :obj:`folder` whose raw file holds the first
    :obj:`n` molecules of the shared file (the test is skipped without
    it)."""
    from ..conftest import SHARED
    src = osp.join(SHARED, 'qm9', 'qm9_qm9pack_compact.csv.gz')
    if not osp.exists(src):
        pytest.skip('shared QM9 file not available')
    root = osp.join(str(folder), 'qm9')
    header, rows = _read_rows(src, n)
    _write_rows(osp.join(root, 'raw', 'qm9_qm9pack_compact.csv.gz'), header,
                rows)
    return root


@pytest.fixture
def no_download(monkeypatch):
    def fail(url, *args, **kwargs):
        raise OSError(f'no internet ({url})')

    monkeypatch.setattr(base, 'download_url', fail)


@pytest.fixture
def qm9_slice(tmp_path, shared_data):
    r"""The first rows of the qm9pack file plus one invalid SMILES row, and
    a GDSS-style valid_idx file selecting every 5th row, the invalid row and
    one GDB id absent from the slice."""
    header, rows = _read_rows(
        osp.join(shared_data, 'qm9', 'qm9_qm9pack_compact.csv.gz'),
        NUM_QM9_ROWS)
    bad = list(rows[-1])
    bad[0], bad[1] = '999999', 'C1CC(X'
    rows = rows + [bad]
    root = str(tmp_path / 'qm9')
    _write_rows(osp.join(root, 'raw', 'qm9_qm9pack_compact.csv.gz'), header,
                rows)
    test_ids = [int(r[0]) for r in rows[:NUM_QM9_ROWS:5]]
    valid = test_ids + [999999, ABSENT_ID]
    with open(osp.join(root, 'raw', 'valid_idx_qm9.json'), 'w') as f:
        json.dump({'valid_idxs': [f'{i - 1:06d}' for i in valid]}, f)
    return root, header, rows[:NUM_QM9_ROWS], set(test_ids)


def test_qm9_splits(qm9_slice, no_download):
    root, header, rows, test_ids = qm9_slice
    with pytest.warns(UserWarning, match='skipped 1 of 61'):
        train = QM9Molecules(root, split='train')
    test = QM9Molecules(root, split='test')
    full = QM9Molecules(root, split='all')
    assert len(test) == len(test_ids) == 12
    assert len(train) == NUM_QM9_ROWS - 12
    assert len(full) == len(train) + len(test) == NUM_QM9_ROWS
    train_ids = {int(d.idx) for d in train}
    assert {int(d.idx) for d in test} == test_ids
    assert not train_ids & test_ids
    assert train_ids | test_ids == {int(r[0]) for r in rows}
    assert train.info['num_skipped'] == 1
    assert train.info['skipped_ids'] == [999999]
    assert train.info['num_test_ids'] == 14
    assert train.info['num_test_ids_absent'] == 1
    assert repr(test) == 'QM9Molecules(12, split=test)'

    by_id = {int(r[0]): r for r in rows}
    cols = [header.index(t[2]) for t in QM9_TARGETS]
    for data in list(full)[:6]:
        row = by_id[int(data.idx)]
        assert data.x.size(1) == len(QM9_ATOMS)
        assert data.y.size() == (1, 15)
        expected = torch.tensor([[float(row[c]) for c in cols]])
        assert torch.allclose(data.y, expected)
        # SMILES round trip: raw -> graph -> RDKit molecule -> SMILES.
        assert data.smiles == canonical_smiles(row[1])
        mol = data_to_mol(data.x, data.edge_index, data.edge_attr, QM9_ATOMS)
        assert mol_to_smiles(mol) == data.smiles


def test_qm9_cache_is_reused(qm9_slice, no_download, monkeypatch):
    root = qm9_slice[0]
    with pytest.warns(UserWarning, match='skipped'):
        first = QM9Molecules(root, split='test')
    assert osp.exists(osp.join(root, 'processed', 'qm9pack.pt'))

    def fail(self):
        raise AssertionError('processed again')

    monkeypatch.setattr(QM9Molecules, 'process', fail)
    again = QM9Molecules(root, split='test')
    assert [d.smiles for d in again] == [d.smiles for d in first]
    assert len(QM9Molecules(root, split='train')) == NUM_QM9_ROWS - 12
    with pytest.raises(AssertionError, match='processed again'):
        QM9Molecules(root, split='test', force_reload=True)


def test_qm9_moleculenet_format(qm9_slice, tmp_path, no_download):
    root, header, rows, test_ids = qm9_slice
    with pytest.warns(UserWarning, match='skipped'):
        ref = QM9Molecules(root, split='all')
    # The same molecules in the layout of MoleculeNet's qm9.csv.
    names = [t[3] for t in QM9_TARGETS]
    order = ['A', 'B', 'C'] + names[:12]
    new_header = ['mol_id', 'smiles'] + order + ['u0_atom']
    cols = {t[3]: header.index(t[2]) for t in QM9_TARGETS}
    new_rows = [[f'gdb_{r[0]}', r[1]] + [r[cols[n]] for n in order] + ['0']
                for r in rows]
    other = str(tmp_path / 'moleculenet')
    _write_rows(osp.join(other, 'raw', 'qm9.csv'), new_header, new_rows)
    os.link(osp.join(root, 'raw', 'valid_idx_qm9.json'),
            osp.join(other, 'raw', 'valid_idx_qm9.json'))
    full = QM9Molecules(other, split='all')
    assert osp.exists(osp.join(other, 'processed', 'moleculenet.pt'))
    assert full.info['raw_file'] == 'qm9.csv'
    assert [d.smiles for d in full] == [d.smiles for d in ref]
    assert torch.equal(full.y, ref.y)
    assert {int(d.idx) for d in QM9Molecules(other, 'test')} == test_ids


def test_qm9_pre_filter_and_chem_features(qm9_slice, no_download):
    root = qm9_slice[0]

    def pre_filter(data):
        return data.num_nodes > 4

    with pytest.warns(UserWarning, match='skipped'):
        train = QM9Molecules(root, 'train', chem_features=True,
                             pre_filter=pre_filter)
    test = QM9Molecules(root, 'test', chem_features=True,
                        pre_filter=pre_filter)
    full = QM9Molecules(root, 'all', chem_features=True,
                        pre_filter=pre_filter)
    assert osp.exists(osp.join(root, 'processed', 'qm9pack_chem.pt'))
    assert len(train) + len(test) == len(full) < NUM_QM9_ROWS
    assert full.info['num_filtered'] == NUM_QM9_ROWS - len(full)
    assert all(d.num_nodes > 4 for d in full)
    assert full[0].chem_x.size() == (full[0].num_nodes, 24)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match='Invalid split'):
        QM9Molecules(str(tmp_path), split='val')
    with pytest.raises(ValueError, match='Invalid split'):
        ZINC12k(str(tmp_path), split='valid')
    with pytest.raises(ValueError, match='max_molecules'):
        MOSES(str(tmp_path), split='test', max_molecules=0)


def test_missing_raw_files_raise_clear_error(tmp_path, no_download):
    with pytest.raises(RuntimeError, match='qm9_qm9pack_compact.csv.gz'):
        QM9Molecules(str(tmp_path / 'qm9'))
    with pytest.raises(RuntimeError, match='no internet'):
        QM9Molecules(str(tmp_path / 'qm9'))
    with pytest.raises(RuntimeError, match='indexes_train_val_test.csv'):
        ZINC12k(str(tmp_path / 'zinc'))
    with pytest.raises(RuntimeError, match='test.csv.gz'):
        MOSES(str(tmp_path / 'moses'), split='test')
    # The qm9pack table cannot be downloaded; valid_idx is still missing.
    root = tmp_path / 'qm9b'
    _write_rows(str(root / 'raw' / 'qm9_qm9pack_compact.csv.gz'),
                ['Index', 'SMILES'], [['1', 'C']])
    with pytest.raises(RuntimeError, match="'valid_idx_qm9.json' is miss"):
        QM9Molecules(str(root))


def test_zinc12k_slice(tmp_path, shared_data, no_download):
    src = osp.join(shared_data, 'zinc12k_benchgnn')
    header, rows = _read_rows(osp.join(src, 'smiles_score.csv'), 30)
    root = str(tmp_path / 'zinc')
    _write_rows(osp.join(root, 'raw', 'smiles_score.csv'), header, rows)
    index = [[str(i), str(20 + i) if i < 5 else '',
              str(25 + i) if i < 5 else ''] for i in range(20)]
    _write_rows(osp.join(root, 'raw', 'indexes_train_val_test.csv'),
                ['train', 'val', 'test'], index)
    sizes = {s: len(ZINC12k(root, s)) for s in ZINC12k.splits}
    assert sizes == {'train': 20, 'val': 5, 'test': 5, 'all': 30}
    test = ZINC12k(root, 'test')
    assert [int(d.idx) for d in test] == list(range(25, 30))
    data = test[0]
    row = rows[25]
    assert data.x.size(1) == len(ZINC_ATOMS)
    expected = [float(row[header.index(c)]) for c in ['logp', 'SA', 'score']]
    assert torch.allclose(data.y, torch.tensor([expected]))
    assert data.smiles == canonical_smiles(row[0])

    logp, sa = expected[:2]
    value = penalized_logp(row[0], logp, sa)
    assert value == pytest.approx(penalized_logp(row[0]), abs=1e-5)
    assert penalized_logp(row[0], logp, sa, normalize=False) == \
        pytest.approx(logp - sa)  # no ring larger than 6

    # Aromatic bonds as a fourth type: a separate processed file, the same
    # molecules and splits, and every graph converts back to its molecule
    # (up to which ring nitrogen carries the hydrogen: the graph does not
    # say it).
    arom = ZINC12k(root, 'all', kekulize=False)
    assert osp.basename(arom.processed_paths[0]) == 'zinc12k_aromatic.pt'
    kek = ZINC12k(root, 'all')
    assert arom.split_idx.keys() == kek.split_idx.keys()
    assert all(torch.equal(arom.split_idx[k], kek.split_idx[k])
               for k in kek.split_idx)
    assert arom[0].edge_attr.size(1) == 4 and kek[0].edge_attr.size(1) == 3
    num_aromatic = 0
    for a, k in zip(arom, kek):
        assert torch.equal(a.edge_index, k.edge_index) and a.smiles == k.smiles
        num_aromatic += int(a.edge_attr[:, 3].sum())
        mol = data_to_mol(a.x, a.edge_index, a.edge_attr, ZINC_ATOMS)
        assert mol_to_smiles(mol).replace('[nH]', 'n') == \
            a.smiles.replace('[nH]', 'n')
    assert num_aromatic > 0


def test_penalized_logp_cycle_penalty():
    smiles = 'C1CCCCCCCCC1'  # a 10-ring: cycle penalty 4
    value = penalized_logp(smiles, logp=1.0, sa=2.0, normalize=False)
    assert value == pytest.approx(1.0 - 2.0 - 4)
    normalized = penalized_logp(smiles, logp=1.0, sa=2.0)
    expected = ((1.0 - 2.4570953) / 1.4343244 - (2.0 - 3.0525811) /
                0.8335207 - (4 - 0.0485697) / 0.2860212)
    assert normalized == pytest.approx(expected, abs=1e-5)
    assert penalized_logp('C1CC(X') is None


def test_moses_slice(tmp_path, shared_data, no_download):
    header, rows = _read_rows(
        osp.join(shared_data, 'moses', 'test.csv.gz'), 40)
    root = str(tmp_path / 'moses')
    _write_rows(osp.join(root, 'raw', 'test.csv.gz'), header, rows)
    small = MOSES(root, split='test', max_molecules=25)
    assert len(small) == 25
    assert osp.exists(osp.join(root, 'processed', 'test_25.pt'))
    full = MOSES(root, split='test')
    assert len(full) == 40 and full.info['num_skipped'] == 0
    assert [d.smiles for d in full[:25]] == [d.smiles for d in small]
    assert full[3].smiles == canonical_smiles(rows[3][0])
    assert int(full[3].idx) == 3
    assert full.split_idx is None
    # An uncompressed CSV is read as well.
    other = str(tmp_path / 'moses_csv')
    _write_rows(osp.join(other, 'raw', 'test.csv'), header, rows[:10])
    assert len(MOSES(other, split='test')) == 10


def test_molecule_dataset_stats(qm9_slice, no_download):
    root = qm9_slice[0]
    with pytest.warns(UserWarning, match='skipped'):
        train = QM9Molecules(root, 'train')
    stats = molecule_dataset_stats(train)
    assert stats == molecule_dataset_stats(list(train), atoms=QM9_ATOMS)
    assert stats['num_molecules'] == len(train)
    num_atoms = sum(d.num_nodes for d in train)
    assert sum(stats['atom_type_counts'].values()) == num_atoms
    assert stats['num_atoms_mean'] == pytest.approx(num_atoms / len(train))
    assert stats['num_atoms_max'] == max(d.num_nodes for d in train)
    num_bonds = sum(d.edge_index.size(1) for d in train) // 2
    assert sum(stats['bond_type_counts'].values()) == num_bonds
    assert list(stats['atom_type_counts'])[:4] == ['C', 'N', 'O', 'F']
    assert 'N+' in stats['atom_type_counts']


@pytest.fixture
def only_if_selected(request):
    r"""Slow tests run only when selected with :obj:`-m slow` (a plain
    :obj:`pytest tests/datasets` stays fast)."""
    if 'slow' not in (request.config.option.markexpr or ''):
        pytest.skip("slow: select with -m slow")


def _link_raw(tmp_path, shared_data, folder, names):
    root = tmp_path / folder
    os.makedirs(root / 'raw')
    for name in names:
        os.symlink(osp.join(shared_data, folder, name), root / 'raw' / name)
    return str(root)


@pytest.mark.slow
def test_qm9_full(tmp_path, shared_data, no_download,
                  only_if_selected):
    root = _link_raw(tmp_path, shared_data, 'qm9',
                     ['qm9_qm9pack_compact.csv.gz', 'valid_idx_qm9.json'])
    start = time.perf_counter()
    train = QM9Molecules(root, 'train')
    seconds = time.perf_counter() - start
    test = QM9Molecules(root, 'test')
    full = QM9Molecules(root, 'all')
    print(f'QM9 processing: {seconds:.1f} s, train {len(train)}, '
          f'test {len(test)}, all {len(full)}, info {full.info}')
    assert full.info['num_skipped'] == 0
    assert full.info['num_test_ids_absent'] == 168
    assert (len(train), len(test), len(full)) == (117_917, 12_914, 130_831)
    train_idx = set(full.split_idx['train'].tolist())
    assert not train_idx & set(full.split_idx['test'].tolist())


@pytest.mark.slow
def test_zinc12k_full(tmp_path, shared_data, no_download,
                      only_if_selected):
    root = _link_raw(tmp_path, shared_data, 'zinc12k_benchgnn',
                     ['smiles_score.csv', 'indexes_train_val_test.csv'])
    sizes = {s: len(ZINC12k(root, s)) for s in ZINC12k.splits}
    assert sizes == {'train': 10_000, 'val': 1_000, 'test': 1_000,
                     'all': 12_000}
    stats = molecule_dataset_stats(ZINC12k(root, 'all'))
    assert stats['num_atoms_mean'] == pytest.approx(23.18, abs=0.01)


def test_download_urls(tmp_path, monkeypatch):
    calls = []

    def fake(url, folder, log=True, filename=None):
        calls.append((url, filename))
        path = osp.join(folder, filename)
        with open(path, 'w') as f:  # not gzip, like a Git LFS pointer
            f.write('version https://git-lfs.github.com/spec/v1\n')
        return path

    monkeypatch.setattr(base, 'download_url', fake)
    with pytest.raises(KeyError, match="mol_id"):  # fake file, no header
        QM9Molecules(str(tmp_path / 'qm9'))
    # Downloads go to a hidden part file, moved into place when complete.
    assert calls[0] == (molecules.MOLECULENET_QM9_URL, '.qm9.csv.part')
    assert calls[1][0].endswith(
        f'harryjo97/GDSS/{molecules.GDSS_COMMIT}/data/valid_idx_qm9.json')
    assert sorted(os.listdir(tmp_path / 'qm9' / 'raw')) == [
        'qm9.csv', 'valid_idx_qm9.json']
    with pytest.raises(RuntimeError, match='did not return a gzip file'):
        MOSES(str(tmp_path / 'moses'), split='test')
    assert calls[-1][0].endswith('/moses/dataset/data/test.csv.gz')
    # Nothing kept: no part file, no empty raw (or root) folder.
    assert not osp.exists(tmp_path / 'moses')
    calls.clear()
    with pytest.raises(KeyError, match="SMILES"):
        ZINC12k(str(tmp_path / 'zinc'))
    assert [c[1] for c in calls] == ['.smiles_score.csv.part',
                                     '.indexes_train_val_test.csv.part']
    assert all(molecules.GRAPHIUM_COMMIT in c[0] for c in calls)


def _zinc_root(tmp_path, shared_data, num_rows=30, index=None):
    r"""The first :obj:`num_rows` rows of ZINC-12k and a split file (line
    :obj:`i + 2` lists train row i, val row 20 + i and test row 25 + i for
    i < 5); returns the root, the rows and the raw paths."""
    src = osp.join(shared_data, 'zinc12k_benchgnn')
    header, rows = _read_rows(osp.join(src, 'smiles_score.csv'), num_rows)
    root = str(tmp_path / 'zinc')
    table = osp.join(root, 'raw', 'smiles_score.csv')
    _write_rows(table, header, rows)
    if index is None:
        index = [[str(i), str(20 + i) if i < 5 else '',
                  str(25 + i) if i < 5 else ''] for i in range(20)]
    split_file = osp.join(root, 'raw', 'indexes_train_val_test.csv')
    _write_rows(split_file, ['train', 'val', 'test'], index)
    return root, rows, table, split_file


def test_zinc_split_file_must_fit_the_table(tmp_path, shared_data,
                                            no_download):
    # The split file lists rows 0..29; the table was cut to 20 rows.
    root, _, _, split_file = _zinc_root(tmp_path, shared_data, 20)
    with pytest.raises(ValueError) as e:
        ZINC12k(root)
    assert str(e.value) == (
        f"'{split_file}', line 2, column 'val': row 20 is outside the 20 "
        f"data rows of 'smiles_score.csv'")
    assert os.listdir(root) == ['raw']  # nothing processed


@pytest.mark.parametrize('cell,line,error', [
    ('3', 5, "column 'train': row 3 is already in split 'val' (line 2); "
     "splits must not overlap or repeat rows"),
    ('x', 2, "column 'val': 'x' is not a row index"),
    ('-1', 2, "column 'val': row -1 is outside the 30 data rows of "
     "'smiles_score.csv'"),
])
def test_zinc_bad_split_entries(tmp_path, shared_data, no_download, cell,
                                line, error):
    index = [[str(i), str(20 + i) if i < 5 else '',
              str(25 + i) if i < 5 else ''] for i in range(20)]
    index[0][1] = cell  # line 2, column 'val'
    root, _, _, split_file = _zinc_root(tmp_path, shared_data, index=index)
    with pytest.raises(ValueError) as e:
        ZINC12k(root)
    assert str(e.value) == f"'{split_file}', line {line}, {error}"


def test_zinc_empty_split(tmp_path, shared_data, no_download):
    index = [[str(i), str(20 + i) if i < 5 else '', ''] for i in range(20)]
    root, _, _, split_file = _zinc_root(tmp_path, shared_data, index=index)
    with pytest.raises(ValueError) as e:
        ZINC12k(root)
    assert str(e.value) == f"'{split_file}': split 'test' lists no rows"


@pytest.mark.parametrize('keep,error', [
    # cut after 'SMILES,SA' of the 10th data row: too few fields
    (lambda line: line[:line.index(',', line.index(',') + 1)],
     '2 fields where the header has 4 (a file cut mid-line, or a '
     'malformed row)'),
    # cut inside the last field: no line end
    (lambda line: line[:-3],
     'the last line has no line end, so the file looks cut mid-line (if it '
     'is complete, end it with a newline)'),
])
def test_csv_cut_mid_line(tmp_path, shared_data, no_download, keep, error):
    root, _, table, _ = _zinc_root(tmp_path, shared_data)
    with open(table, newline='') as f:
        lines = f.readlines()
    with open(table, 'w', newline='') as f:
        f.writelines(lines[:10] + [keep(lines[10])])
    with pytest.raises(ValueError) as e:
        ZINC12k(root)
    assert str(e.value) == f"'{table}', line 11: {error}"


def test_truncated_gzip(tmp_path, shared_data, no_download):
    header, rows = _read_rows(
        osp.join(shared_data, 'moses', 'test.csv.gz'), 200)
    path = str(tmp_path / 'moses' / 'raw' / 'test.csv.gz')
    _write_rows(path, header, rows)
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(ValueError, match=rf"^'{path}', line \d+: cannot be "
                       r"read \(Compressed file ended before the "):
        MOSES(str(tmp_path / 'moses'), split='test')


def test_bad_rows_are_skipped_and_counted(tmp_path, shared_data,
                                          no_download):
    root, rows, table, _ = _zinc_root(tmp_path, shared_data)
    header = ['SMILES', 'SA', 'logp', 'score']
    rows[4][2] = 'abc'  # line 6, logp
    _write_rows(table, header, rows)
    with pytest.warns(UserWarning) as record:
        train = ZINC12k(root, 'train')
    messages = [str(w.message) for w in record]
    assert messages == [
        "ZINC12k: skipped 1 bad rows of 'smiles_score.csv' (line 6: column "
        "'logp': could not convert string to float: 'abc')"]
    assert train.info['num_bad_rows'] == 1
    assert train.info['bad_rows'] == [
        "line 6: column 'logp': could not convert string to float: 'abc'"]
    assert train.info['num_rows'] == 30
    # Ids are row numbers: row 4 is missing, nothing renumbered.
    assert [int(d.idx) for d in train] == [i for i in range(20) if i != 4]
    assert [int(d.idx) for d in ZINC12k(root, 'test')] == list(range(25, 30))
    # A 'nan' or 'inf' property is a bad row too, never a NaN target:
    rows[4][2] = '2.5'
    rows[7][1], rows[8][3] = 'nan', '-inf'
    _write_rows(table, header, rows)
    with pytest.warns(UserWarning, match='skipped 2 bad rows'):
        train = ZINC12k(root, 'train')
    assert train.info['bad_rows'] == [
        "line 9: column 'SA': 'nan' is not a finite number",
        "line 10: column 'score': '-inf' is not a finite number"]
    assert torch.isfinite(train._data.y).all()


def test_qm9_changed_raw_file_is_reprocessed(qm9_slice, no_download):
    root, header, rows, _ = qm9_slice
    with pytest.warns(UserWarning, match='skipped'):
        assert len(QM9Molecules(root, 'all')) == NUM_QM9_ROWS
    _write_rows(osp.join(root, 'raw', 'qm9_qm9pack_compact.csv.gz'), header,
                rows[:20])
    with pytest.warns(UserWarning, match=r"raw files "
                      r"\['qm9_qm9pack_compact.csv.gz'\] changed"):
        full = QM9Molecules(root, 'all')
    assert len(full) == 20
    assert full.info['num_rows'] == 20
    # A truncated processed file is rebuilt, no EOFError/UnpicklingError.
    meta = osp.join(root, 'processed', 'qm9pack_meta.pt')
    with open(meta, 'r+b') as f:
        f.truncate(os.path.getsize(meta) // 2)
    with pytest.warns(UserWarning, match='a processed file cannot be read'):
        assert len(QM9Molecules(root, 'test')) == 4


def test_qm9_raw_structure_errors(qm9_slice, no_download):
    root, header, rows, _ = qm9_slice
    valid = osp.join(root, 'raw', 'valid_idx_qm9.json')
    with open(valid, 'w') as f:
        json.dump({'valid_idxs': ['000001', '000002', 'x']}, f)
    with pytest.raises(ValueError) as e:
        QM9Molecules(root)
    assert str(e.value) == (f"'{valid}', entry 2 of 'valid_idxs': 'x' is "
                            f"not a row index")
    with open(valid, 'w') as f:
        json.dump({'valid_idxs': ['000001']}, f)
    table = osp.join(root, 'raw', 'qm9_qm9pack_compact.csv.gz')
    _write_rows(table, header, rows[:3] + [rows[1]])
    with pytest.raises(ValueError) as e:
        QM9Molecules(root)
    assert str(e.value) == (f"'{table}', line 5: GDB id {rows[1][0]} is "
                            f"already on line 3")
