"""Small modal dialogs: ask for a line of text, confirm, or show a page of text."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line (a comment, a reason); Enter answers, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, placeholder: str = "", required: bool = False):
        super().__init__()
        self.question = question
        self.placeholder = placeholder
        self.required = required

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question)
            yield Input(placeholder=self.placeholder, id="answer")
            yield Label("Enter to confirm, Escape to cancel", id="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.required and not event.value.strip():
            self.query_one("#hint", Label).update("A reason is required (Escape to cancel).")
            return
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class LeaveScreen(ModalScreen[str | None]):
    """Leaving a console attached to a running engine: detach, pause and detach, or abort."""

    BINDINGS = [
        Binding("d", "answer('detach')", "Detach"),
        Binding("p", "answer('pause')", "Pause and detach"),
        Binding("x", "answer('abort')", "Abort"),
        Binding("escape", "answer(None)", "Stay"),
    ]

    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(
                "Leave this console? The engine runs on its own; "
                f"`rollgate attach {self.run_id}` comes back.",
                id="question",
            )
            yield Label(
                "[b]d[/b] detach (the run goes on)   [b]p[/b] pause, then detach   "
                "[b]x[/b] abort the run   [b]Escape[/b] stay"
            )

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: y confirms, n or Escape declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.question, id="question")
            yield Label("[b]y[/b] yes   [b]n[/b] no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextScreen(ModalScreen[None]):
    """A page of text (help, node detail); Escape or q closes it."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close")]
    # the page takes the keys at once: up/down, page up/down, home/end scroll it
    AUTO_FOCUS = "#dialog"

    def __init__(self, title: str, body: str):
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):  # a long page scrolls (up/down, page keys)
            yield Label(f"[b]{self.title_text}[/b]")
            yield Static(self.body, markup=False, id="page")
            yield Label("Escape closes · up/down, PgUp/PgDn, Home/End scroll")

    def action_close(self) -> None:
        self.dismiss(None)
