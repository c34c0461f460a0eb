"""知库 zhiku: offline knowledge-base question answering on an ordinary CPU."""

import os

__version__ = "0.1.0"

# llama.cpp (and the e5 engine) run OpenMP thread teams that meet at a barrier after nearly every operation. When
# the cores are shared (another generation slot, the embedder, a browser) a thread spinning there starves the one it
# waits for and decoding collapses: 48 tokens took 37-100 s instead of 2-5 s on 2 busy cores; the runtime's default
# spin gave 2-23 tok/s for smollm2 at load 3-4 where sleeping waits (PASSIVE) gave 41-53. But sleeping at every
# barrier costs on idle cores: 32 tok/s against 84-94 with the default spin (qwen 17 against 25). A short spin
# (GOMP_SPINCOUNT=1000, a few microseconds, then sleep) kept 82-86 (qwen 24-25) on idle cores and 27-33 at load
# 2-3 (README, serving rows). It must be set before the OpenMP runtime loads, hence here; a value the user set
# for either variable wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = "1000"
