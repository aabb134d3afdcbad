"""genaug: generative models as a data augmentation for self-supervised learning."""

__version__ = "0.1.0"
