"""Data shipped with SpareCycles (the demo job, icons); no code to import."""
