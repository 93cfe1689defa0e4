"""Version 0.1.0's path of the adapters, now ``sktransfer.training._peft``: this name
is that very module, so old imports and pickles naming it resolve unchanged."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("sktransfer.training._peft")
