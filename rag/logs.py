"""Where messages go: the commands' log setup, and third-party chatter sent to the log.

Model loads and the one-time ONNX export make libraries print warnings and progress bars meant
for their own developers (torch's tracer, onnxruntime's quantizer, transformers' weight loading).
Inside :func:`quiet` those go to this package's log at DEBUG level instead of the terminal;
``rag -v`` shows the log from INFO up.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("rag.third_party")


def configure_logging(level: int, fmt: str = "%(levelname)s: %(message)s") -> None:
    """Log records of ``level`` and above to stderr. The level is set on the handler as well
    as on the root logger, so a library that sets its own logger to DEBUG (bm25s does) adds
    no noise, and no library's logger is touched."""
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler])


class _ToDebug(logging.Filter):
    """Turns records logged straight on the root logger (as onnxruntime's quantizer does)
    into DEBUG records of this package's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("%s: %s", record.name, record.getMessage())
        return False


@contextmanager
def quiet() -> Iterator[None]:
    """Warnings, root-logger messages and transformers' progress bars raised inside go to
    the log at DEBUG level instead of the terminal."""
    root = logging.getLogger()
    to_debug = _ToDebug()
    bars = _transformers_bars()
    shown = bars is not None and bars.is_progress_bar_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root.addFilter(to_debug)
        if shown:
            bars.disable_progress_bar()
        try:
            yield
        finally:
            root.removeFilter(to_debug)
            if shown:
                bars.enable_progress_bar()
    for w in caught:
        log.debug("%s: %s (%s:%s)", w.category.__name__, w.message, w.filename, w.lineno)


def _transformers_bars():
    try:
        from transformers.utils import logging as bars
    except ImportError:
        return None
    return bars
