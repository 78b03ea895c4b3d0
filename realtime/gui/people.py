"""The people panel of multi-person runs: who is in view, what each one does, whose details to show."""

from __future__ import annotations

from collections.abc import Sequence

from PyQt6.QtWidgets import QListWidget, QListWidgetItem

from star_har.realtime.gui.widgets import bgr
from star_har.realtime.overlay import person_label, track_colour
from star_har.realtime.people import Person, PersonPrediction


def person_row(person: Person) -> str:
    """The overlay's label (:func:`~realtime.overlay.person_label`), plus ``(hidden)`` while unseen."""
    return person_label(person) if person.visible else f"{person_label(person)} (hidden)"


class PeoplePanel(QListWidget):
    """One row per tracked person, in the person's overlay colour. The selected person (by default
    the first listed) is the one whose predictions the main panels (top-k, importance bars,
    history) follow: :meth:`follows`."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setToolTip("people in view: select one to see their importance bars and top classes")
        self._ids: list[int] = []

    def set_people(self, people: Sequence[Person]) -> None:
        """Show ``people`` (rows are reused, the selection stays with its person)."""
        selected = self.selected_id()
        ids = [p.track_id for p in people]
        if ids != self._ids:
            self.clear()
            for person in people:
                item = QListWidgetItem()
                item.setForeground(bgr(track_colour(person.track_id)))
                self.addItem(item)
                if person.track_id == selected:
                    item.setSelected(True)
            self._ids = ids
        for row, person in enumerate(people):
            self.item(row).setText(person_row(person))

    def selected_id(self) -> int | None:
        """The selected person's track id, else the first listed person's (None: nobody)."""
        rows = [self.row(item) for item in self.selectedItems()]
        if rows:
            return self._ids[rows[0]]
        return self._ids[0] if self._ids else None

    def follows(self, prediction) -> bool:
        """Whether the main panels show ``prediction``: always for single-person runs, else only
        the selected person's."""
        return not isinstance(prediction, PersonPrediction) or prediction.track_id == self.selected_id()
