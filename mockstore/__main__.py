"""`python -m mockstore`: the same program as `mockstore`."""

from .cli import main

main()
