"""(being built) routes of this module are registered in app.ROUTE_MODULES."""


def routes() -> list:
    return []
