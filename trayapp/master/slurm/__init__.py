"""A SLURM cluster as a host: tasks go as job arrays through its login node.

``options`` (what ``hosts add --kind slurm`` takes), ``script`` (the batch
wrapper and the remote folder layout), ``squeue`` (reading SLURM's answers),
``cluster`` (the login node: one SSH connection, every SLURM command),
``driver`` (one thread per cluster keeping the queue in step with it) and
``probe`` (``hosts test``).
"""
