"""SpareCycles' PyQt6 tray app.

Only this package imports PyQt6. It adapts ``trayapp``'s state into Qt models
and calls the same verbs as the CLI; :mod:`sparecycles_ui.app` is the one place that
builds and wires the Qt objects.
"""
