"""Host side of the kiosk feedback system."""

__version__ = "0.1.0"
