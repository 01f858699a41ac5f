"""Emulated devices on pseudo-terminals and the simulated physiology behind them.

Kept apart from the parsers in ``nirsd.drivers``: the transport (``transport.py``,
``pty_link.py``, ``faults.py``), the wire encoders (``encoders.py``), the truth model
(``truth.py``, ``physiology.py``, ``exercise.py``) and the emulators built from them
(``emulator.py`` for NIRSB, ``heg_emulator.py``, ``csv_emulator.py``,
``nonin_emulator.py``, ``replay_emulator.py``).
"""
