"""The ``nirsd`` command, above the daemon and its clients: ``nirsd.cli.main`` builds one
parser from the subcommand modules of both; ``nirsd.cli.testing`` runs real daemons for tests.
"""
