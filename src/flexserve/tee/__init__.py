"""The secure world: the trusted OS side and the FlexServe Framework TA.

Everything under this package runs, by convention, in the secure world of the emulated
device. Normal-world code (``flexserve.nwos``, the attacker) is never handed objects from
here; it only sees ciphertext on flash and the SMC surface of the monitor.

- :mod:`flexserve.tee.sealing`: the sealed model container (weights at rest).
- :mod:`flexserve.tee.trusted_os`: TA sessions behind the forwarded SMC (copy, then verify),
  with :mod:`~flexserve.tee.gp` codes, the :mod:`~flexserve.tee.msg` wire format and the
  :mod:`~flexserve.tee.ta` base class; Flex-Mem for TAs through ``rsmem_alloc``.
"""
