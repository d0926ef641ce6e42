"""A real websocket echo server for the pass-through test: python tests/ws_backend.py PORT"""

import sys

from websockets.sync.server import serve


def echo(ws):
    for message in ws:
        ws.send(f"echo: {message}")


if __name__ == "__main__":
    with serve(echo, "127.0.0.1", int(sys.argv[1])) as server:
        print("ready", flush=True)
        server.serve_forever()
