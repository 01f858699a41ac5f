"""``nirsd console``: the bedside web console (operator page, patient page, HTTP API).

Needs the ``console`` extra (aiohttp).  ``server.Console`` is the web server,
``bridge.DaemonBridge`` its client of the daemon, ``stream.Hub`` the live stream,
``api.Api`` the HTTP API, ``access.Access`` who may connect; ``static/`` holds the
pages and the uPlot chart library (see static/README.md).
"""
