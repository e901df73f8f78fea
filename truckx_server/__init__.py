"""truckx: the server that fleets of truck dashcams talk to."""

__version__ = "0.1.0"
