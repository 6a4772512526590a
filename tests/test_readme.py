import os
import re

README = os.path.join(os.path.dirname(__file__), '..', 'README.md')


def test_readme_quick_start_runs():
    with open(README) as f:
        text = f.read()
    blocks = re.findall(r'```python\n(.*?)```', text, flags=re.S)
    assert blocks, 'README has no python block'
    namespace = {}
    exec(compile(blocks[0], 'README.md', 'exec'), namespace)
    samples = namespace['samples']
    assert len(samples) == 8
    assert all(12 <= g.num_nodes <= 20 for g in samples)
    assert len(namespace['out'].levels) == 4


def test_readme_gives_the_two_commands():
    with open(README) as f:
        text = f.read()
    assert 'make demo' in text and 'make test' in text
