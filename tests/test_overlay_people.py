"""The overlay draws every tracked person in their own colour, with their id and action."""

from __future__ import annotations

import numpy as np

from star_har.realtime.overlay import draw_overlay, person_label, track_colour
from star_har.realtime.people import Person, PersonPrediction
from star_har.realtime.postprocess import ACTION, NO_PERSON


def person(track_id: int, x: float, visible: bool = True, label: str | None = "squat") -> Person:
    rng = np.random.default_rng(track_id)
    keypoints = np.concatenate([rng.uniform(0, 1, (13, 2)) * [100, 200] + [x, 150], np.ones((13, 1))], axis=1)
    box = np.array([x, 150, x + 100, 350], np.float32)
    prediction = None if label is None else PersonPrediction(
        ACTION, label, 0.9, [(label, 0.9)], None, np.zeros(16, np.float32), np.arange(16), np.arange(16) / 10,
        track_id=track_id, box=tuple(box))
    return Person(track_id, keypoints.astype(np.float32), box, visible, prediction)


def colour_pixels(image: np.ndarray, colour, x1: int, x2: int) -> int:
    return int(np.all(image[:, x1:x2] == colour, axis=-1).sum())


def test_every_person_is_drawn_in_their_own_colour_at_their_place():
    image = np.full((480, 640, 3), 30, np.uint8)
    people = [person(1, 20), person(2, 250, label=None), person(3, 480)]
    canvas = draw_overlay(image, None, "penn13", None, people=people)
    assert np.array_equal(image, np.full_like(image, 30))  # drawn on a copy
    regions = {1: (0, 200), 2: (230, 420), 3: (460, 640)}
    for p in people:
        mine = colour_pixels(canvas, track_colour(p.track_id), *regions[p.track_id])
        assert mine > 300, f"person {p.track_id} not drawn"
        for other, (x1, x2) in regions.items():
            if other != p.track_id:
                assert colour_pixels(canvas, track_colour(p.track_id), x1, x2) < mine / 20
    # label rows above the box: something is written there for every person
    for x1, _ in regions.values():
        assert (canvas[120:146, x1:x1 + 60] != 30).any()


def test_a_hidden_person_keeps_a_box_but_no_skeleton():
    image = np.full((480, 640, 3), 30, np.uint8)
    visible = draw_overlay(image, None, "penn13", None, people=[person(1, 200)])
    hidden = draw_overlay(image, None, "penn13", None, people=[person(1, 200, visible=False)])
    colour = track_colour(1)
    assert 0 < colour_pixels(hidden, colour, 0, 640) < colour_pixels(visible, colour, 0, 640) / 2


def test_labels_say_what_is_known_about_each_person():
    assert person_label(person(4, 0)) == "#4 squat 90%"
    assert person_label(person(4, 0, label=None)) == "#4 waiting for a window"
    back = person(4, 0)
    back.prediction.state = NO_PERSON
    assert person_label(back) == "#4 back in view"
    assert person_label(Person(4, back.keypoints, back.box, False, back.prediction)) == "#4 no person in view"
