"""Ferryman: live migration of Linux process trees and containers with CRIU."""

from __future__ import annotations

__version__ = "0.1.0"
