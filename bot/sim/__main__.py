"""python -m bot.sim [--port P] [--markets N] [--seed S]: serve the simulated exchange until interrupted.

The first line printed is a JSON object {"clob_url": ..., "gamma_url": ..., "relayer_url": ..., "ws_url": ...}
(the WebSocket channels are ws_url + "/ws/market" and ws_url + "/ws/user")."""
from __future__ import annotations

import argparse
import json
import signal
import threading

from bot.sim import SimExchange


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.sim", description="simulated Polymarket on loopback")
    parser.add_argument("--port", type=int, default=0,
                        help="CLOB port (0 = a free one); if set, Gamma uses port+1 and the WebSockets port+2")
    parser.add_argument("--markets", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--volatility", type=float, default=None, help="per-second std-dev of the Yes price")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SimExchange(markets=args.markets, seed=args.seed, port=args.port,
                     gamma_port=args.port + 1 if args.port else 0, ws_port=args.port + 2 if args.port else 0,
                     default_volatility=args.volatility) as sim:
        print(json.dumps({"clob_url": sim.clob_url, "gamma_url": sim.gamma_url, "relayer_url": sim.relayer_url,
                          "ws_url": sim.ws_url}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
