"""Real parts for the tests and the benchmarks (``bench/``), in one place.

- :mod:`support.sshd`: an OpenSSH server on loopback with its own keys;
- :mod:`support.daemons`: ``sparecycles slave`` in its own home;
- :mod:`support.peer`: a master reduced to one protocol session with a slave engine;
- :mod:`support.pool`: slave daemons behind the sshd, registered with a master home;
- :mod:`support.xvfb`: a real X display (Xvfb) and input on it (xdotool);
- :mod:`support.desktop`: that display with a tray (trayer), its window tree, clicks, screenshots;
- :mod:`support.slurm`: a one-node SLURM cluster (munged, slurmctld, slurmd) in a temp folder;
- :mod:`support.commands`: the real ``sparecycles`` command line; :mod:`support.waiting`.

Nothing here is mocked, and nothing imports pytest: the tests import it as
``support`` (``tests/`` is on their path), the benchmarks put ``tests/`` on
``sys.path`` first. Every process started here is ended here, by its own pid.
"""
