"""anpvs-tf: adversarially robust and small networks (ANP-VS) in Keras 3.

The modules by layer, each importing only from the layers above it in this
list (tests/test_config.py checks that the imports have no cycle):

- leaves: errors, methods (the methods as data), datasets, files
- settings: config (validated at construction, one override path)
- building blocks: replicas, precision, optimizers, guards, losses, gates,
  layers, attacks, apgd, trades, data, distribution, callbacks, registry
- the model and its compaction: model, channels (the one channel
  analysis), complexity, pruning, serving
- one run: assembly (build, compile, fit), evaluation/ (one engine),
  workdir, checkpoints, base, training
- around runs: exporter, tuning, search; cli is what the scripts share
"""

__version__ = "0.1.0"
