"""Version 0.1.0's path of the data-parallel pieces, now
``sktransfer.training._distributed``: this name is that very module, so models pickled
under DDP by 0.1.0 (``GlobalBatchRecord`` in their callbacks) still load."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("sktransfer.training._distributed")
