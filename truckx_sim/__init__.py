"""truckx-sim: an asyncio fleet of simulated dashcams, usable from the command line or as a library::

    from truckx_sim import SimConfig, arun
    summary = await arun(SimConfig(url="http://127.0.0.1:8888", devices=20, duration_s=5), creds)
"""

from .config import SimConfig
from .env import DeviceResult, Summary, arun, run

__all__ = ["SimConfig", "Summary", "DeviceResult", "arun", "run"]
