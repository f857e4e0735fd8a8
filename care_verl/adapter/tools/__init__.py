"""verl pieces the demo and evaluation reuse (the SFT trainer in one process, the FSDP checkpoint
merger), reading a run's metrics, and the named fault-injection points of the reliability tests.
"""
