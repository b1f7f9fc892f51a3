"""SpareCycles core: jobs, queue, runner and dispatcher, with no Qt in sight.

Everything here must import and work on a headless machine without PyQt6;
``tests/test_layout.py`` proves it. The tray app in ``ui/`` adapts this core.
"""

__version__ = "0.1.0"
