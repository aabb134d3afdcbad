"""Where the probabilistic methods and SimVAE were registered before they moved under genaug/ssl/methods/.

Run folders written before the move name this module in their recipe (`module: genaug.ssl.prob_methods`); importing
it registers the same classes, so those runs still load, evaluate and resume. New recipes need no `module:` line.
"""

from genaug.ssl.methods.probabilistic import BarlowHProb, BarlowZProb, VICRegHProb, VICRegZProb
from genaug.ssl.methods.simvae import SimVAEMethod

__all__ = ["BarlowHProb", "BarlowZProb", "SimVAEMethod", "VICRegHProb", "VICRegZProb"]
