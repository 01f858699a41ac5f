"""nirsd service: config, ring buffer, converter, markers, wire protocol, loop, CLI."""
