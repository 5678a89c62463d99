"""The API's routers, one module per resource; `service.api.app` wires them in order."""
