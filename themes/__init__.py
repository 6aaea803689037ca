"""Rollgate's stylesheet and colour themes: dark, light and high contrast."""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

STYLESHEET = Path(__file__).with_name("rollgate.tcss")

HIGH_CONTRAST = Theme(
    name="rollgate-high-contrast",
    primary="#ffff00",
    secondary="#00ffff",
    accent="#ffffff",
    warning="#ffff00",
    error="#ff5555",
    success="#00ff00",
    foreground="#ffffff",
    background="#000000",
    surface="#000000",
    panel="#1a1a1a",
    dark=True,
)
DARK = Theme(
    name="rollgate-dark",
    primary="#4aa3df",
    secondary="#7fb77e",
    accent="#e5c07b",
    warning="#e5c07b",
    error="#e06c75",
    success="#98c379",
    foreground="#dcdfe4",
    background="#1e2127",
    surface="#262a31",
    panel="#2c313a",
    dark=True,
)
LIGHT = Theme(
    name="rollgate-light",
    primary="#005cc5",
    secondary="#22863a",
    accent="#b08800",
    warning="#b08800",
    error="#cb2431",
    success="#22863a",
    foreground="#24292e",
    background="#ffffff",
    surface="#f6f8fa",
    panel="#eaeef2",
    dark=False,
)
THEMES = (DARK, LIGHT, HIGH_CONTRAST)
