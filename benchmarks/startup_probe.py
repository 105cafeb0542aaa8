"""Start-up of one fednlp command line, in this fresh interpreter, from a given source tree.

    git archive <commit> fednlp | tar -x -C /tmp/tree
    .venv/bin/python benchmarks/startup_probe.py /tmp/tree --help
    .venv/bin/python benchmarks/startup_probe.py /tmp/tree partition --help

Prints: seconds from interpreter start of this script to the command's end, the number of imported
modules, and which heavy packages (torch, transformers, numpy, h5py) were imported. The tree's `fednlp`
wins over the installed (editable) one, so two commits compare side by side in the same venv.
"""

import sys
import time

t0 = time.perf_counter()
tree = sys.argv[1]
sys.meta_path[:] = [m for m in sys.meta_path if "editable" not in repr(m).lower()]  # the editable install's finder
sys.path.insert(0, tree)

import contextlib  # noqa: E402
import io  # noqa: E402

import fednlp  # noqa: E402
from fednlp.cli import main  # noqa: E402

assert fednlp.__file__.startswith(tree), fednlp.__file__
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(sys.argv[2:])
    except SystemExit:  # --help exits
        pass
heavy = [m for m in ("torch", "transformers", "numpy", "h5py") if m in sys.modules]
print(f"{time.perf_counter() - t0:.3f} {len(sys.modules)} {','.join(heavy) or '-'}")
