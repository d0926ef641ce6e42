"""`python -m mockstore`: the same program as `mockstore`."""

from .cli import cli

cli(prog_name="mockstore")
