"""The paper's experiments: the drivers behind the ``mgvae`` command, their
training loops, result records and plots."""
