"""A faster exact CPU ProcessModel for ``lava.proc.conv.process.Conv`` (matmul per tap)."""
