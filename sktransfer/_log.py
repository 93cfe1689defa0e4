"""skorch's epoch table, without terminal colour codes where no terminal reads them.

skorch's ``PrintLog`` wraps each epoch's best values in ANSI colour codes whatever its
output is, so a log redirected to a file or collected by CI reads ``\\x1b[36m0.4821\\x1b[0m``.
Here the codes are kept only when the table goes to a terminal, and never under
``NO_COLOR`` (https://no-color.org), decided at each epoch: the estimator may be
pickled in one session and fitted in another, with another stdout.
"""

from __future__ import annotations

import os
import re
import sys

from skorch.callbacks import PrintLog as _SkorchPrintLog

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def caller_stacklevel() -> int:
    """``stacklevel`` of the first frame outside sktransfer, scikit-learn and joblib, for
    a ``warnings.warn`` in the function that calls this.

    The warning then points at the user's line (``model.fit(...)``, or the
    ``cross_validate(...)`` that called it), and Python shows it once per such line.
    """
    import joblib
    import sklearn

    packages = tuple(
        os.path.dirname(os.path.abspath(module.__file__)) + os.sep
        for module in (sklearn, joblib, sys.modules[__name__.split(".")[0]])
    )
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(packages):
        frame, level = frame.f_back, level + 1
    return level


def colour_wanted(stream=None) -> bool:
    """Whether colour codes belong in ``stream`` (default: the current ``sys.stdout``)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PrintLog(_SkorchPrintLog):
    """skorch's ``PrintLog``, in plain text unless it prints to a terminal.

    A sink other than ``print`` (a logger, a file's ``write``) always gets plain text:
    it is not a terminal.
    """

    def format_row(self, row, key, color):
        text = super().format_row(row, key, color)
        if isinstance(text, str) and not (self.sink is print and colour_wanted()):
            return _ANSI.sub("", text)
        return text
