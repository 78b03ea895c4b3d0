"""The main window's display widgets: live video with the skeleton, the prediction, per-frame
importance bars with the window's frames under them, and a timeline of recent predictions.

All of them only paint what they were last given (``set_*`` methods called on the UI thread);
none keeps more than a bounded amount of history.
"""

from __future__ import annotations

import colorsys
from collections import OrderedDict, deque

import cv2
import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PyQt6.QtWidgets import QGridLayout, QLabel, QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from star_har.model.skeleton import get_layout
from star_har.realtime.importance import IMPORTANCE_SOURCES
from star_har.realtime.overlay import BONE_COLOUR, confidence_colour
from star_har.realtime.postprocess import ACTION, NO_PERSON, Prediction

BACKGROUND = QColor(24, 26, 30)
TEXT = QColor(230, 232, 236)
MUTED = QColor(140, 146, 156)
BAR = QColor(255, 160, 60)
BAR_PEAK = QColor(255, 90, 40)
STATE_COLOURS = {ACTION: QColor(90, 220, 110), NO_PERSON: MUTED}
UNCERTAIN = QColor(255, 200, 0)


def bgr(colour: tuple[int, int, int]) -> QColor:
    """A QColor from an OpenCV BGR triple (so the GUI and the recorded overlay match)."""
    return QColor(colour[2], colour[1], colour[0])


def qimage_from_bgr(image: np.ndarray) -> QImage:
    """An owned QImage of a ``(H, W, 3)`` uint8 BGR array."""
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    return QImage(image.data, width, height, image.strides[0], QImage.Format.Format_BGR888).copy()


def class_colour(index: int) -> QColor:
    """A distinct, stable colour per class index (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.55, 0.95)
    return QColor(int(r * 255), int(g * 255), int(b * 255))


def fit_rect(width: float, height: float, area: QRectF) -> QRectF:
    """The largest rectangle of aspect ``width:height`` centred in ``area``."""
    scale = min(area.width() / width, area.height() / height)
    w, h = width * scale, height * scale
    return QRectF(area.x() + (area.width() - w) / 2, area.y() + (area.height() - h) / 2, w, h)


class VideoView(QWidget):
    """The current frame, scaled to fit, with the skeleton drawn by QPainter (bones of the
    checkpoint's layout, joints coloured by confidence like :mod:`realtime.overlay`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image: QImage | None = None
        self._keypoints: np.ndarray | None = None
        self._layout = get_layout("penn13")
        self.min_confidence = 0.2
        self.placeholder = "Choose a source and press Start (Ctrl+Enter)"

    def set_layout(self, layout: str) -> None:
        self._layout = get_layout(layout)

    def set_frame(self, image: np.ndarray, keypoints: np.ndarray | None) -> None:
        """Show ``image`` (H, W, 3) BGR with ``keypoints`` (J, 3) in its pixels (None: no skeleton)."""
        self._image = qimage_from_bgr(image)
        self._keypoints = None if keypoints is None else np.array(keypoints, dtype=np.float32)
        self.update()

    def clear(self, placeholder: str | None = None) -> None:
        self._image, self._keypoints = None, None
        if placeholder is not None:
            self.placeholder = placeholder
        self.update()

    def image_rect(self) -> QRectF | None:
        """Where the frame is drawn in widget coordinates (None before the first frame)."""
        if self._image is None:
            return None
        return fit_rect(self._image.width(), self._image.height(), QRectF(self.rect()))

    def map_point(self, x: float, y: float) -> QPointF:
        """Frame pixel -> widget coordinates."""
        rect = self.image_rect()
        scale = rect.width() / self._image.width()
        return QPointF(rect.x() + x * scale, rect.y() + y * scale)

    def joint_radius(self) -> float:
        return max(3.0, self.image_rect().height() / 110)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        rect = self.image_rect()
        if rect is None:
            painter.setPen(MUTED)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(rect, self._image)
        kps = self._keypoints
        if kps is None or len(kps) != self._layout.num_joints:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        visible = kps[:, 2] > self.min_confidence
        points = [self.map_point(x, y) for x, y in kps[:, :2]]
        radius = self.joint_radius()
        painter.setPen(QPen(bgr(BONE_COLOUR), max(2.0, radius * 0.6), cap=Qt.PenCapStyle.RoundCap))
        for a, b in self._layout.bones:
            if visible[a] and visible[b]:
                painter.drawLine(points[a], points[b])
        painter.setPen(QPen(QColor(0, 0, 0), 1.0))
        for j in np.flatnonzero(visible):
            painter.setBrush(bgr(confidence_colour(float(kps[j, 2]))))
            painter.drawEllipse(points[j], radius, radius)


class ImportanceBars(QWidget):
    """One bar per frame of the current window, its height the model's frame importance
    (relative to the window's most important frame), each over a thumbnail of its frame."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.importance = np.zeros(0, np.float32)
        self._frame_indices = np.zeros(0, np.int64)
        self._thumbnails: list[QImage | None] = []
        self.set_source("attention")

    def set_source(self, source: str) -> None:
        """Say what the bars mean: a key of :data:`~star_har.realtime.importance.IMPORTANCE_SOURCES`."""
        label, explanation = IMPORTANCE_SOURCES[source]
        self.caption = f"frame importance: {label} (oldest frame left, highlighted = mattered most)"
        self.setToolTip(f"One bar per frame of the window behind the prediction shown.\n"
                        f"Bar height: {explanation}, relative to the tallest bar.\n"
                        f"The highlighted bar is the frame that mattered most.")
        self.update()

    def set_window(self, importance: np.ndarray, frame_indices: np.ndarray | None = None,
                   thumbnails: list[QImage | None] | None = None) -> None:
        """importance: (T,) values >= 0; frame_indices: (T,) stream frames; thumbnails: T images or None."""
        self.importance = np.asarray(importance, dtype=np.float32).reshape(-1)
        count = len(self.importance)
        self._frame_indices = (np.zeros(count, np.int64) if frame_indices is None
                               else np.asarray(frame_indices).reshape(-1))
        self._thumbnails = list(thumbnails) if thumbnails is not None else [None] * count
        self.update()

    def _geometry(self) -> tuple[float, float, float, float]:
        """(left margin, column width, bar baseline y, tallest bar height) in widget pixels."""
        count = max(1, len(self.importance))
        column = (self.width() - 8) / count
        thumb = min(column * 0.75, self.height() * 0.34)
        baseline = self.height() - thumb - 18
        return 4.0, column, baseline, baseline - 16

    def bar_rects(self) -> list[QRectF]:
        """Each bar's rectangle in widget coordinates, frame order."""
        left, column, baseline, tallest = self._geometry()
        peak = float(self.importance.max()) if len(self.importance) else 0.0
        rects = []
        for t, value in enumerate(self.importance):
            height = tallest * value / peak if peak > 0 else 0.0
            rects.append(QRectF(left + t * column + column * 0.15, baseline - height, column * 0.7, height))
        return rects

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        painter.setPen(MUTED)
        small = QFont(self.font())
        small.setPointSizeF(max(6.0, small.pointSizeF() * 0.8))
        painter.setFont(small)
        if not len(self.importance) or not np.any(self.importance > 0):
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                             "frame importance of the current window appears with the first prediction")
            return
        painter.drawText(QRectF(6, 0, self.width(), 15), Qt.AlignmentFlag.AlignLeft, self.caption)
        left, column, baseline, _ = self._geometry()
        peak_index = int(np.argmax(self.importance))
        for t, rect in enumerate(self.bar_rects()):
            painter.fillRect(rect, BAR_PEAK if t == peak_index else BAR)
            cell = QRectF(left + t * column + 1, baseline + 2, column - 2, self.height() - baseline - 18)
            image = self._thumbnails[t] if t < len(self._thumbnails) else None
            if image is not None and not image.isNull():
                painter.drawImage(fit_rect(image.width(), image.height(), cell), image)
            painter.drawText(QRectF(left + t * column, self.height() - 16, column, 15),
                             Qt.AlignmentFlag.AlignHCenter, str(int(self._frame_indices[t])))


class Timeline(QWidget):
    """The recent predictions as a strip of coloured cells (oldest left), runs labelled."""

    def __init__(self, capacity: int = 90, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(34)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.entries: deque[tuple[str, QColor]] = deque(maxlen=capacity)
        self.capacity = capacity
        self._class_index: dict[str, int] = {}

    def set_classes(self, class_names: list[str]) -> None:
        self._class_index = {name: i for i, name in enumerate(class_names)}

    def add(self, prediction: Prediction) -> None:
        if prediction.state == ACTION:
            entry = (prediction.label, class_colour(self._class_index.get(prediction.label, 0)))
        elif prediction.state == NO_PERSON:
            entry = ("no person", QColor(70, 72, 78))
        else:
            entry = ("?", QColor(110, 100, 60))
        self.entries.append(entry)
        self.update()

    def clear(self) -> None:
        self.entries.clear()
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        cell = self.width() / self.capacity
        runs: list[list] = []  # [label, colour, first cell, count]
        for i, (label, colour) in enumerate(self.entries):
            if runs and runs[-1][0] == label:
                runs[-1][3] += 1
            else:
                runs.append([label, colour, i, 1])
        painter.setPen(QColor(10, 10, 10))
        for label, colour, first, count in runs:
            rect = QRectF(first * cell, 4, count * cell, self.height() - 8)
            painter.fillRect(rect, colour)
            if painter.fontMetrics().horizontalAdvance(label) + 6 < rect.width():
                painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)


class PredictionPanel(QWidget):
    """The current action, its confidence, and the next best classes as bars."""

    def __init__(self, rows: int = 3, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        self.action = QLabel("-")
        font = self.action.font()
        font.setPointSizeF(font.pointSizeF() * 2.0)
        font.setBold(True)
        self.action.setFont(font)
        self.action.setWordWrap(True)
        self.detail = QLabel("waiting for the first window")
        layout.addWidget(self.action)
        layout.addWidget(self.detail)
        grid = QGridLayout()
        self.names: list[QLabel] = []
        self.bars: list[QProgressBar] = []
        for row in range(rows):
            name, bar = QLabel(""), QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(False)
            bar.setFixedHeight(10)
            grid.addWidget(name, row, 0)
            grid.addWidget(bar, row, 1)
            self.names.append(name)
            self.bars.append(bar)
        layout.addLayout(grid)

    def set_prediction(self, prediction: Prediction | None) -> None:
        if prediction is None:
            self.action.setText("-")
            self.detail.setText("waiting for the first window")
            top_k: list[tuple[str, float]] = []
        else:
            colour = STATE_COLOURS.get(prediction.state, UNCERTAIN)
            self.action.setStyleSheet(f"color: {colour.name()}")
            self.action.setText(prediction.label if prediction.state == ACTION else prediction.text())
            self.detail.setText(f"confidence {prediction.score:.0%}  ·  frames "
                                f"{prediction.first_frame}-{prediction.last_frame}")
            top_k = prediction.top_k
        for row, (name, bar) in enumerate(zip(self.names, self.bars)):
            label, score = top_k[row] if row < len(top_k) else ("", 0.0)
            name.setText(f"{label} {score:.0%}" if label else "")
            bar.setValue(int(round(score * 1000)))


class ThumbnailCache:
    """Small images of the latest ``capacity`` frames by stream index, for the importance strip."""

    def __init__(self, capacity: int = 160, height: int = 64) -> None:
        self.capacity, self.height = capacity, height
        self._images: OrderedDict[int, QImage] = OrderedDict()

    def __len__(self) -> int:
        return len(self._images)

    def add(self, index: int, image: np.ndarray, keypoints: np.ndarray | None = None) -> None:
        """Keep a small copy of frame ``index`` (H, W, 3) BGR, cropped around the person when
        ``keypoints`` (J, 3) are given, so the strip shows the pose rather than the room."""
        if keypoints is not None and (keypoints[:, 2] > 0.2).sum() >= 2:
            points = keypoints[keypoints[:, 2] > 0.2, :2]
            (x0, y0), (x1, y1) = points.min(0), points.max(0)
            margin = 0.2 * max(x1 - x0, y1 - y0) + 4
            h, w = image.shape[:2]
            x0, y0 = int(max(0, x0 - margin)), int(max(0, y0 - margin))
            x1, y1 = int(min(w, x1 + margin)), int(min(h, y1 + margin))
            if x1 > x0 and y1 > y0:
                image = image[y0:y1, x0:x1]
        width = max(1, round(image.shape[1] * self.height / image.shape[0]))
        self._images[index] = qimage_from_bgr(cv2.resize(image, (width, self.height), interpolation=cv2.INTER_AREA))
        while len(self._images) > self.capacity:
            self._images.popitem(last=False)

    def get(self, indices: np.ndarray) -> list[QImage | None]:
        return [self._images.get(int(i)) for i in indices]

    def clear(self) -> None:
        self._images.clear()
