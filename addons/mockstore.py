"""mockstore as a mitmproxy script:

    mitmdump -s addons/mockstore.py --mode reverse:https://api.example.com
    mitmweb -s addons/mockstore.py --set mock_mode=mock

The addon itself lives in the installed package (mockstore.addon) so that `mockstore serve`
runs exactly the same code in its lean master.
"""

import os
import sys

# mitmproxy puts this script's folder first on sys.path while loading it, where this file
# would shadow the `mockstore` package it shares a name with.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

from mockstore.addon import MockStore  # noqa: E402

addons = [MockStore()]
