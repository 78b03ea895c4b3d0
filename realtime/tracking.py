"""Who is who from frame to frame: a small keypoint tracker for the people MediaPipe finds.

Each frame's people are matched to the live tracks by one optimal assignment
(:func:`scipy.optimize.linear_sum_assignment`) on a cost from three cues (:func:`match_cost`): the
mean distance between the joints both skeletons show, after moving the track by its velocity to
the frame's time; where the feet are; and the torso's length (people at different distances from
the camera differ in size, whatever their arms and legs do). Comparing whole skeletons rather than
boxes keeps two people apart while they cross (their boxes overlap, their joints do not
coincide), and the velocity carries a person hidden behind another to where they reappear.
Where people overlap MediaPipe sometimes returns one skeleton made of two of them; a recently seen
track does not follow a skeleton that has a good part of its joints on another track's
(:func:`borrowed_joints`): for that frame it stays where it was, unseen.

Lifecycle: a track is *tentative* until it was matched ``min_hits`` times in a row (a single
false detection never gets an id), then *confirmed*; a confirmed track that is not seen is kept
(``visible`` False, position predicted) for ``max_missed_seconds`` of stream time (long enough
for MediaPipe, which often loses people behind others for seconds), then ends; sooner when its
predicted feet leave the frame.
Ids count up from 1 and are never reused.

Why not a library: the maintained ByteTrack packages do not fit this install. ``supervision``
>= 0.27 no longer ships ByteTrack (it moved to ``trackers``), ``trackers`` and older
``supervision`` require ``opencv-python``, which shares its ``cv2/`` folder with the
``opencv-contrib-python`` that MediaPipe needs, ``norfair`` requires numpy < 2 and
``bytetracker`` pins torch 1.13. ByteTrack also matches boxes only, the weak cue at a crossing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from star_har.model.skeleton import get_layout
from star_har.pose import person_boxes

#: Joints at or below this confidence are not compared (MediaPipe's guesses for hidden joints).
MIN_JOINT_CONFIDENCE = 0.3
#: Weight of the torso-length cue, times |log of the length ratio| (0.18 for a person 1.2 times as large).
SIZE_WEIGHT = 0.5
#: Added to an unseen track's cost per second unseen (up to UNSEEN_PENALTY_SECONDS).
UNSEEN_PENALTY, UNSEEN_PENALTY_SECONDS = 0.05, 2.0
#: How fast the skeleton's say in matching fades while a track is unseen (see :func:`match_cost`).
POSE_MEMORY_SECONDS = 0.3
#: A matched skeleton with at least this share of its joints on another track's (see
#: :func:`borrowed_joints`) is taken for MediaPipe's mix of two people and not followed.
MIXED_SHARE = 0.2
_NO_MATCH = 1e6


def skeleton_boxes(people: np.ndarray, min_confidence: float = MIN_JOINT_CONFIDENCE) -> np.ndarray:
    """:func:`star_har.pose.person_boxes` at the tracker's joint confidence."""
    return person_boxes(people, min_confidence)


def torso_joints(layout: str | None) -> tuple[list[int], list[int]] | None:
    """Indices of the shoulders and the hips in ``layout`` (None when it lacks them)."""
    if layout is None:
        return None
    names = get_layout(layout).joint_names
    wanted = (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"))
    if not all(name in names for pair in wanted for name in pair):
        return None
    return tuple([names.index(name) for name in pair] for pair in wanted)


def torso_lengths(people: np.ndarray, torso: tuple[list[int], list[int]] | None) -> np.ndarray:
    """``(P,)`` distance between the shoulders' and the hips' midpoints (NaN where not all four
    are confident, or without ``torso``)."""
    if torso is None:
        return np.full(len(people), np.nan, np.float32)
    shoulders, hips = people[:, torso[0]], people[:, torso[1]]
    length = np.linalg.norm(shoulders[..., :2].mean(axis=1) - hips[..., :2].mean(axis=1), axis=1)
    confident = (np.concatenate([shoulders, hips], axis=1)[..., 2] > MIN_JOINT_CONFIDENCE).all(axis=1)
    return np.where(confident & (length > 1), length, np.nan).astype(np.float32)


def ground_point(box: np.ndarray) -> np.ndarray:
    """Bottom centre of a box (where the feet are): it moves when the person walks, hardly when
    they squat or raise their arms, so velocities from it predict where a hidden person reappears."""
    return np.array([(box[0] + box[2]) / 2, box[3]], np.float32)


@dataclass(eq=False)
class Track:
    """One person followed over time (pixels and stream seconds)."""

    track_id: int
    keypoints: np.ndarray  # (J, 3) at the last match
    box: np.ndarray  # (4,) at the last match
    first_seen: float
    last_seen: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # px / s of the feet
    # (timestamp, feet x, feet y) of the recent matches, for the velocity
    history: deque = field(default_factory=lambda: deque(maxlen=64))
    hits: int = 1
    visible: bool = True
    torso: float = float("nan")  # smoothed torso length (px), NaN until measured

    def __post_init__(self) -> None:
        self.history.append((self.last_seen, *ground_point(self.box)))

    @property
    def height(self) -> float:
        return float(max(self.box[3] - self.box[1], self.box[2] - self.box[0], 1.0))

    def age(self, now: float) -> float:
        return now - self.first_seen

    def predicted_shift(self, now: float, horizon: float) -> np.ndarray:
        """Where the velocity moves the track by ``now`` (at most ``horizon`` s ahead)."""
        return self.velocity * min(now - self.last_seen, horizon)

    def predicted_joints(self, now: float, horizon: float) -> np.ndarray:
        """``(J, 2)`` the last matched joints moved by :meth:`predicted_shift`."""
        return self.keypoints[:, :2] + self.predicted_shift(now, horizon)


def match_cost(track: Track, now: float, horizon: float, people: np.ndarray, boxes: np.ndarray,
               torsos: np.ndarray) -> np.ndarray:
    """``(P,)`` cost of ``track`` being each of ``people`` ``(P, J, 3)`` (boxes ``(P, 4)``), in units
    of the person's size (the larger of the two boxes' longer sides: a squat does not shrink it).

    Two cues, both after moving the track by its velocity to ``now``: the mean distance between
    the joints both skeletons show (the centre distance when they share fewer than 3), and the
    distance between the feet (:func:`ground_point`). The skeleton decides between frames; the
    longer a track is unseen the more its pose may have changed, so its weight fades (time
    constant :data:`POSE_MEMORY_SECONDS`) in favour of where the walk predicts the feet. The torso
    length ``torsos`` ``(P,)`` of each person against the track's adds :data:`SIZE_WEIGHT` times
    the absolute log ratio (nothing where either is unknown).
    """
    shift = track.predicted_shift(now, horizon)
    moved = track.predicted_joints(now, horizon)
    both = (track.keypoints[:, 2] > MIN_JOINT_CONFIDENCE) & (people[..., 2] > MIN_JOINT_CONFIDENCE)
    shared = both.sum(axis=1)
    joint_cost = (np.linalg.norm(people[..., :2] - moved, axis=-1) * both).sum(axis=1) / np.maximum(shared, 1)
    centre_cost = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - (track.box[:2] + track.box[2:]) / 2 - shift,
                                 axis=1)
    skeleton_cost = np.where(shared >= 3, joint_cost, centre_cost)
    feet = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)
    feet_cost = np.linalg.norm(feet - ground_point(track.box) - shift, axis=1)
    pose_weight = np.exp(-(now - track.last_seen) / POSE_MEMORY_SECONDS)
    sizes = np.maximum(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), track.height)
    size_cost = np.nan_to_num(np.abs(np.log(torsos / track.torso)), nan=0.0)
    return (pose_weight * skeleton_cost + (1 - pose_weight) * feet_cost) / sizes + SIZE_WEIGHT * size_cost


def borrowed_joints(track: Track, others: list[Track], now: float, horizon: float, person: np.ndarray) -> float:
    """Share of ``person``'s ``(J, 3)`` confident joints that lie on another track's same joint
    rather than on ``track``'s (after moving each by its velocity to ``now``): nearer the other's
    than half the distance to ``track``'s, and off ``track``'s by over a tenth of its size.

    Where people overlap MediaPipe sometimes returns one skeleton made of two people (a head and
    shoulders of one, the legs of another); following it would move the track half onto the other
    person, and it would keep the wrong person from then on.
    """
    confident = person[:, 2] > MIN_JOINT_CONFIDENCE
    if not others or confident.sum() < 3:
        return 0.0
    own = np.linalg.norm(person[:, :2] - track.predicted_joints(now, horizon), axis=1)
    borrowed = np.zeros(len(person), bool)
    for other in others:
        seen = other.keypoints[:, 2] > MIN_JOINT_CONFIDENCE
        theirs = np.linalg.norm(person[:, :2] - other.predicted_joints(now, horizon), axis=1)
        borrowed |= seen & (theirs < 0.5 * own) & (own > 0.1 * track.height)
    return float((borrowed & confident & (track.keypoints[:, 2] > MIN_JOINT_CONFIDENCE)).sum() / confident.sum())


class PersonTracker:
    """Keeps an id on every person across frames (see the module doc).

    max_cost: largest matching cost (mean joint distance / person height) accepted as the same
    person. layout: the skeletons' joint layout (its shoulders and hips give the torso-length cue).
    max_missed_seconds: how long an unseen confirmed track is kept. min_hits: matches in
    a row before a track is confirmed. velocity_seconds: the velocity is the least-squares slope of
    the feet over this much recent history (a longer baseline averages out per-frame pose noise).
    """

    def __init__(self, layout: str | None = None, max_cost: float = 0.5, max_missed_seconds: float = 5.0,
                 min_hits: int = 2, velocity_seconds: float = 1.0) -> None:
        self.torso = torso_joints(layout)
        self.max_cost, self.max_missed_seconds = max_cost, max_missed_seconds
        self.min_hits, self.velocity_seconds = min_hits, velocity_seconds
        self.tracks: list[Track] = []
        self.ended: list[Track] = []  # confirmed tracks that ended in the last update
        self._next_id = 1

    def confirmed(self) -> list[Track]:
        """The live confirmed tracks (seen in this frame or kept while unseen), oldest first."""
        return [t for t in self.tracks if t.hits >= self.min_hits]

    def update(self, people: np.ndarray, timestamp: float, width: float | None = None) -> list[Track]:
        """Match ``(P, J, 3)`` skeletons (pixels) seen at ``timestamp`` s; returns :meth:`confirmed`.
        Tracks that ended are in :attr:`ended` until the next update. ``width``: the frame's, so that
        an unseen person whose feet the velocity carried out of the frame ends at once (walked out)."""
        people = np.asarray(people, dtype=np.float32)
        self.ended = []
        if any(timestamp < t.last_seen for t in self.tracks):  # the stream restarted: nobody carries over
            self.ended, self.tracks = self.confirmed(), []
        boxes, torsos = skeleton_boxes(people), torso_lengths(people, self.torso)  # once per frame
        matches = self._assign(people, boxes, torsos, timestamp)
        matched_people = {index for _, index in matches}  # a mixed skeleton starts no track either
        confirmed = self.confirmed()
        followed = []
        for track, index in matches:
            # a track back from hiding is compared with its old pose: far off anyway, so not checked
            recent = timestamp - track.last_seen <= POSE_MEMORY_SECONDS
            others = [t for t in confirmed if t is not track]
            if not recent or borrowed_joints(track, others, timestamp, self.max_missed_seconds,
                                             people[index]) < MIXED_SHARE:
                followed.append((track, index))
        for track, index in followed:  # after every check: the checks compare with the previous frame's tracks
            self._follow(track, people[index], boxes[index], float(torsos[index]), timestamp)
        matched_tracks = {id(track) for track, _ in followed}
        kept = []
        for track in self.tracks:
            if id(track) not in matched_tracks:
                track.visible = False
                confirmed = track.hits >= self.min_hits
                unseen = timestamp - track.last_seen
                feet_x = ground_point(track.box)[0] + track.predicted_shift(timestamp, self.max_missed_seconds)[0]
                left = width is not None and not 0 <= feet_x < width
                if not confirmed or unseen > self.max_missed_seconds or left:
                    if confirmed:
                        self.ended.append(track)
                    continue
            kept.append(track)
        for index in sorted(set(range(len(people))) - matched_people):
            kept.append(Track(self._next_id, people[index].copy(), boxes[index], timestamp, timestamp,
                              torso=float(torsos[index])))
            self._next_id += 1
        self.tracks = kept
        return self.confirmed()

    def _assign(self, people: np.ndarray, boxes: np.ndarray, torsos: np.ndarray,
                timestamp: float) -> list[tuple[Track, int]]:
        if not self.tracks or not len(people):
            return []
        cost = np.empty((len(self.tracks), len(people)))
        for row, track in enumerate(self.tracks):
            cost[row] = match_cost(track, timestamp, self.max_missed_seconds, people, boxes, torsos)
            # where an unseen person is grows less certain with time: at a crossing, where a hidden
            # person's predicted place coincides with a visible one's, the visible track keeps its person
            cost[row] += UNSEEN_PENALTY * min(timestamp - track.last_seen, UNSEEN_PENALTY_SECONDS) * (not track.visible)
        cost[cost > self.max_cost] = _NO_MATCH
        rows, cols = linear_sum_assignment(cost)
        return [(self.tracks[r], int(c)) for r, c in zip(rows, cols) if cost[r, c] < _NO_MATCH]

    def _follow(self, track: Track, person: np.ndarray, box: np.ndarray, torso: float, timestamp: float) -> None:
        track.keypoints, track.box, track.last_seen = person.copy(), box, timestamp
        track.history.append((timestamp, *ground_point(track.box)))
        while track.history[0][0] < timestamp - self.velocity_seconds:
            track.history.popleft()
        t, x, y = np.asarray(track.history, dtype=np.float64).T
        t = t - t.mean()
        if len(t) >= 3 and t @ t > 0:
            track.velocity = (np.array([t @ (x - x.mean()), t @ (y - y.mean())]) / (t @ t)).astype(np.float32)
        if not np.isnan(torso):
            track.torso = torso if np.isnan(track.torso) else 0.7 * track.torso + 0.3 * torso
        track.hits += 1
        track.visible = True
