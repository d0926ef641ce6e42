"""The stateful virtual backend: what a client POSTs, it can GET, PATCH and DELETE later.

Resources come from an OpenAPI document, an entity file or learned traffic; see
`VirtualBackend` for the object the addon asks, and `OPTIONS` for its settings.
"""

from .backend import OPTIONS, VirtualBackend, build_model, validate_options

__all__ = ["OPTIONS", "VirtualBackend", "build_model", "validate_options"]
