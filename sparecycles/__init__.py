"""SpareCycles: turn a lab's idle PCs into a compute pool for Python simulations.

``import sparecycles`` is the package users see; the command ``sparecycles``
starts here (:mod:`sparecycles.launch`). It sits above both ``trayapp`` (the
Qt-free core) and ``ui`` (the PyQt6 tray app), so neither has to reach for the
other: the core never imports the GUI, and this package chooses between them.
"""

from trayapp import __version__

__all__ = ["__version__"]
