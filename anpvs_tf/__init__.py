"""anpvs-tf: adversarially robust and small networks (ANP-VS) in Keras 3."""

__version__ = "0.1.0"
