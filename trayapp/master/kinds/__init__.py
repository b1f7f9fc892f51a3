"""The kinds of host a master sends work to, and the registry the dispatcher,
``hosts add/list/test`` and the window's hosts table look them up in.

A new kind is one module (a :class:`~trayapp.master.kinds.kind.HostKind`
subclass: its options, its driver, its columns, its check) and one line here.
"""

from trayapp.master.kinds.kind import (AddOption, Column, Driver, Finding, HostKind, KindContext,  # noqa: F401
                                       QueueFacts)
from trayapp.master.kinds.local import LocalKind
from trayapp.master.kinds.registry import KindRegistry
from trayapp.master.kinds.slurm import SlurmKind
from trayapp.master.kinds.ssh import SSHKind

KINDS = KindRegistry(LocalKind(), SSHKind(), SlurmKind(), default="ssh")
