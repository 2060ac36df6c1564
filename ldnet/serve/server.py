"""Running the app under uvicorn with a graceful SIGTERM.

On SIGTERM (or Ctrl-C) uvicorn stops listening, lets the requests in flight finish (up to
``grace_s``) and then runs the app's shutdown, which drains the batcher. Before that, the
guard is told to answer everything but liveness with 503, so a request that reaches an open
keep-alive connection during shutdown is refused cleanly rather than started.
"""

from __future__ import annotations

import uvicorn


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state):
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig, frame) -> None:
        self.state.draining = True
        super().handle_exit(sig, frame)


def run_server(app, host: str, port: int, *, grace_s: float = 30.0, log_level="info") -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=grace_s,
        # The error bodies are the app's; uvicorn's own header is noise.
        server_header=False,
    )
    GracefulServer(config, app.state.serve).run()
