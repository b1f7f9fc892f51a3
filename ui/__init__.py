"""SpareCycles' PyQt6 tray app (not built yet: see the tray-app issue).

Only this package may import PyQt6; it adapts ``trayapp``'s state into Qt
models and calls the same verbs as the CLI.
"""
