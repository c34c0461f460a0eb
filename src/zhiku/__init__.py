"""知库 zhiku: offline knowledge-base question answering on an ordinary CPU."""

import os

__version__ = "0.1.0"

# llama.cpp (and the e5 engine) run OpenMP thread teams whose threads spin at every barrier. When the cores are
# shared (another generation slot, the embedder, a browser) a spinning thread starves the one it waits for and
# decoding collapses: 48 tokens took 37-100 s instead of 2-5 s on 2 busy cores. Sleeping waits avoid that. It
# must be set before the OpenMP runtime loads, hence here; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
