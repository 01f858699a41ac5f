"""nirsd device drivers: pure parsers, the serial transport, emulators, the registry."""
