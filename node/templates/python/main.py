# {{name}}: a Chorus task in Python (CPython 3.15 with numpy, on the grid's
# wasm32-wasip1 runtime). It reads its input on stdin and writes its output on
# stdout. Replicas compare outputs bit for bit, so keep it a pure function of
# its input: seed every random generator from the input, never from the clock.
import sys

import numpy as np

seed = int(sys.stdin.read().strip() or "0")
rng = np.random.default_rng(seed)
x = rng.normal(size=100_000)
print(f"seed={seed} mean={x.mean():.12f} std={x.std():.12f}")
