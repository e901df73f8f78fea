"""The rules of each resource and its JSON shape, one module per resource. Domain services are built once
by ``wiring.py`` and reached by handlers through typed properties (``self.devices``, ``self.alarms``,
...). They talk to storage and the bus, raise domain errors (``errors.py``), and never import a
handler."""
