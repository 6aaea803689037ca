"""The console's footer: the keys its screen takes now, drawn as one line.

Textual's Footer builds a widget per key and rebuilds them all whenever the bindings change
(a page opens or closes, the focus moves): at 5,000 nodes under load that was 20-60 ms a
time, most of what closing the help page cost, and events waited behind it. This footer
redraws one line, and only when the keys it shows change. A click on a key presses it.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widgets import Static


class KeysFooter(Static, can_focus=False):
    """The screen's shown bindings, `key description` each, and the palette's key at the end."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"keys-footer--key", "keys-footer--description"}
    DEFAULT_CSS = """
    KeysFooter {
        dock: bottom;
        height: 1;
        text-wrap: nowrap;
        text-overflow: clip;
        color: $footer-foreground;
        background: $footer-background;
        .keys-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .keys-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._keys: list[tuple[str, str, str, bool]] = []  # key, shown as, description, enabled
        self._spans: list[tuple[int, int, str, bool]] = []  # start, end, key, enabled
        self._drawn: tuple[object, ...] = ()

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._draw()

    def _bindings_changed(self, screen: Screen[object]) -> None:
        if screen is self.screen:
            self._draw()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn = ()  # a new theme: the same keys in new colours
        if self.is_mounted:
            self._draw()

    def visible_descriptions(self) -> list[str]:
        """The descriptions whose key fits whole in the footer's width."""
        width = self.size.width
        ends = {key: end for _, end, key, _ in self._spans}
        return [d for key, _, d, _ in self._keys if ends.get(key, width + 1) <= width]

    def _collect(self) -> list[tuple[str, str, str, bool]]:
        app = self.app
        keys: list[tuple[str, str, str, bool]] = []
        seen: set[str] = set()
        palette: tuple[str, str, str, bool] | None = None
        for key, (_, binding, enabled, _) in self.screen.active_bindings.items():
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette = (binding.key, app.get_key_display(binding), binding.description, enabled)
                continue
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            keys.append((binding.key, app.get_key_display(binding), binding.description, enabled))
        return keys + ([palette] if palette else [])

    def _draw(self) -> None:
        keys = self._collect()
        if (keys, self.size.width) == self._drawn:
            return
        self._drawn = (keys, self.size.width)
        self._keys = keys
        key_style = self.get_component_rich_style("keys-footer--key")
        description_style = self.get_component_rich_style("keys-footer--description")
        palette = keys[-1:] if keys and keys[-1][0] == self.app.COMMAND_PALETTE_BINDING else []
        text = Text(no_wrap=True, overflow="crop")
        self._spans = []
        for key, shown, description, enabled in keys[: len(keys) - len(palette)]:
            start = len(text)
            text.append(f" {shown} ", key_style)
            text.append(f"{description} " if description else "", description_style)
            if not enabled:
                text.stylize("dim", start)
            self._spans.append((start, len(text), key, enabled))
        for key, shown, description, enabled in palette:  # at the right end, as Textual's
            corner = Text.assemble("▏", (shown, key_style), f" {description} ")
            room = max(0, self.size.width - len(corner))
            text.truncate(room, pad=True)
            self._spans = [span for span in self._spans if span[1] <= room]
            self._spans.append((room, room + len(corner), key, enabled))
            text.append_text(corner)
        self.update(text, layout=False)

    def on_resize(self, event: events.Resize) -> None:
        self._draw()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        """A click on a key presses it (a disabled key rings the bell), as Textual's does."""
        for start, end, key, enabled in self._spans:
            if start <= event.x < end:
                if enabled:
                    self.app.simulate_key(key)
                else:
                    self.app.bell()
                return
