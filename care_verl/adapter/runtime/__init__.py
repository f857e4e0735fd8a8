"""Running verl where it was not built to run, and where it has no hook: the ``cpu`` platform
(gloo, no accelerator) and the narrow patches on verl 0.9.1, each with its verl file:line.
"""
