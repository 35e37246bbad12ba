"""CXone simulator: both API profiles (``v2`` and ``call-lists``) on one port, with faithful
limits, fault injection, a webhook receiver and an inspection API (see docs/simulator.md).
"""

from connector.simulator.config import (
    CallListsSettings,
    ConnectionFaults,
    DncFaults,
    ErrorFaults,
    FaultSettings,
    JobFaults,
    JobSettings,
    LatencyFaults,
    LimitSettings,
    RateLimitFaults,
    SimulatorConfig,
    UploadFaults,
    V2Settings,
    WebSocketFaults,
)
from connector.simulator.server import Simulator
from connector.simulator.thread import SimulatorThread

__all__ = [
    "CallListsSettings",
    "ConnectionFaults",
    "DncFaults",
    "ErrorFaults",
    "FaultSettings",
    "JobFaults",
    "JobSettings",
    "LatencyFaults",
    "LimitSettings",
    "RateLimitFaults",
    "Simulator",
    "SimulatorConfig",
    "SimulatorThread",
    "UploadFaults",
    "V2Settings",
    "WebSocketFaults",
]
