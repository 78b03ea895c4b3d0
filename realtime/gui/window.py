"""The star-har main window: live video with the skeleton, prediction, importance bars,
timeline, controls and a status bar. All work happens in :class:`PipelineController`'s threads."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QAction, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QPushButton,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from star_har.realtime import MODELS, model_checkpoint
from star_har.realtime.engines.table import engine_choices
from star_har.realtime.gui.controller import PipelineController, PipelineFactory, default_factory
from star_har.realtime.gui.people import PeoplePanel
from star_har.realtime.gui.widgets import ImportanceBars, PredictionPanel, Timeline, VideoView
from star_har.realtime.metrics import MetricsSnapshot
from star_har.realtime.overlay import draw_people
from star_har.realtime.pipeline import FrameUpdate, PipelineConfig
from star_har.realtime.postprocess import ACTION, Prediction

log = logging.getLogger(__name__)

HISTORY_ROWS = 50  # action changes listed in the side panel
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm);;All files (*)"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f} ms"


class MainWindow(QMainWindow):
    """The application window. ``config`` fills the controls; ``factory`` builds pipelines (tests)."""

    def __init__(self, config: PipelineConfig | None = None, factory: PipelineFactory = default_factory,
                 sources: list[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.config = config or PipelineConfig()
        self.setWindowTitle("star-har: real-time action recognition")
        self.resize(1180, 760)
        self.controller = PipelineController(factory, parent=self)
        self.predictions_seen = 0
        self._class_names: list[str] = []
        self._layout = "penn13"  # the running checkpoint's joint layout (set when it starts)
        self._build_controls(sources or [])
        self._build_layout()
        self._build_actions()
        self._build_status_bar()
        c = self.controller
        c.frame_ready.connect(self.show_frame)
        c.prediction_ready.connect(self.show_prediction)
        c.started.connect(self._on_started)
        c.finished.connect(self._on_finished)
        c.state_changed.connect(self._on_state)
        c.recording_changed.connect(self._on_recording)
        c.source_status.connect(self._on_source_status)
        c.metrics_ready.connect(self.show_metrics)
        c.recording_failed.connect(lambda error: self.show_message(f"recording stopped: {error}"))
        self._on_state("idle")

    # -- construction ----------------------------------------------------------------------------
    def _build_controls(self, sources: list[tuple[str, str]]) -> None:
        self.source_box = QComboBox()
        self.source_box.setEditable(True)
        self.source_box.setToolTip("camera index (0, 1...), video file, rtsp:// or http(s):// URL, image folder")
        for label, value in [("camera 0", "0"), *sources]:
            self.source_box.addItem(label, value)
        self._set_combo_text(self.source_box, str(self.config.source))
        # a shipped model by name, or the path of your own checkpoint
        self.model_box = QComboBox()
        self.model_box.setEditable(True)
        self.model_box.setToolTip("a shipped model, or the path of a star-har checkpoint (.pt)")
        for name in MODELS:
            self.model_box.addItem(name, str(model_checkpoint(name)))
        self._set_combo_text(self.model_box, str(self.config.checkpoint))
        self.engine_box = QComboBox()
        self.engine_box.addItems(engine_choices())
        self.engine_box.setCurrentText(self.config.engine)
        self.hop_spin = QDoubleSpinBox()
        self.hop_spin.setRange(0.03, 3.0)
        self.hop_spin.setSingleStep(0.1)
        self.hop_spin.setSuffix(" s")
        self.hop_spin.setValue(self.config.hop_seconds)
        self.hop_spin.setToolTip("seconds between two predictions (applies live)")
        self.threshold_spin = QDoubleSpinBox()
        # the value below 0 reads "calibrated": the checkpoint's own open-set threshold
        self.threshold_spin.setRange(-0.05, 1.0)
        self.threshold_spin.setSpecialValueText("calibrated")
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(-0.05 if self.config.threshold is None else self.config.threshold)
        self.threshold_spin.setToolTip("below this smoothed probability: 'no confident action' (applies live)")
        self.hop_spin.valueChanged.connect(lambda v: self.controller.update_settings(hop_seconds=v))
        self.threshold_spin.valueChanged.connect(lambda v: self.controller.update_settings(threshold=self._threshold()))

    def _build_layout(self) -> None:
        self.video = VideoView()
        self.importance = ImportanceBars()
        self.timeline = Timeline()
        self.prediction_panel = PredictionPanel()
        self.people = PeoplePanel()  # multi-person runs only
        self.people.hide()
        self.history = QListWidget()
        self.history.setToolTip("when the recognised action changed (stream time)")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()

        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.message)
        column.addWidget(self.video, 1)
        column.addWidget(self.importance)
        history = QLabel("recent predictions (oldest left)")
        history.setStyleSheet("color: gray")
        column.addWidget(history)
        column.addWidget(self.timeline)

        settings = QGroupBox("Settings")
        form = QFormLayout(settings)
        for label, field, button, slot in (("Source", self.source_box, "File...", self.open_file),
                                           ("Model", self.model_box, "...", self.choose_checkpoint)):
            row = QHBoxLayout()
            row.addWidget(field, 1)
            browse = QPushButton(button)
            browse.clicked.connect(slot)
            row.addWidget(browse)
            form.addRow(label, row)
        form.addRow("Engine", self.engine_box)
        form.addRow("Prediction every", self.hop_spin)
        form.addRow("Threshold", self.threshold_spin)
        keys = QLabel("Ctrl+Enter start · Space pause · Esc stop\nCtrl+O open file · Ctrl+R record · Ctrl+Q quit")
        keys.setStyleSheet("color: gray")

        right = QWidget()
        side = QVBoxLayout(right)
        side.addWidget(self.prediction_panel)
        side.addWidget(self.people)
        side.addWidget(QLabel("Action changes"))
        side.addWidget(self.history, 1)
        side.addWidget(settings)
        side.addWidget(keys)
        right.setMinimumWidth(260)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 1)
        splitter.setSizes([880, 300])
        self.setCentralWidget(splitter)

    def _action(self, text: str, shortcut: str | QKeySequence.StandardKey, slot, tip: str) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{tip} ({QKeySequence(shortcut).toString()})")
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.start_action = self._action("Start", "Ctrl+Return", self.start, "start the selected source")
        self.pause_action = self._action("Pause", "Space", self.toggle_pause, "pause / resume")
        self.pause_action.setCheckable(True)
        self.stop_action = self._action("Stop", "Escape", self.stop, "stop")
        self.record_action = self._action("Record", "Ctrl+R", self.toggle_recording,
                                          "record the annotated stream to a video file")
        self.record_action.setCheckable(True)
        self.open_action = self._action("Open file...", "Ctrl+O", self.open_file, "open a video file and start it")
        self.quit_action = self._action("Quit", "Ctrl+Q", self.close, "quit")
        toolbar = QToolBar("Controls")
        toolbar.setMovable(False)
        for action in (self.start_action, self.pause_action, self.stop_action, self.record_action,
                       self.open_action, self.quit_action):
            toolbar.addAction(action)
        self.addToolBar(toolbar)

    def _build_status_bar(self) -> None:
        self.status_labels = {name: QLabel() for name in ("state", "fps", "pose", "model", "latency",
                                                          "dropped", "engine")}
        for name, label in self.status_labels.items():
            self.statusBar().addPermanentWidget(label, 1 if name == "engine" else 0)
        self._engine_text = "engine: -"
        self.status_labels["engine"].setText(self._engine_text)

    # -- actions ---------------------------------------------------------------------------------
    def current_config(self) -> PipelineConfig:
        """The configuration the controls describe (files play at their own frame rate)."""
        return replace(self.config, source=self._combo_value(self.source_box),
                       checkpoint=self._combo_value(self.model_box),
                       engine=self.engine_box.currentText(), hop_seconds=self.hop_spin.value(),
                       threshold=self._threshold(), realtime_pace=True)

    def _threshold(self) -> float | None:
        """The threshold control's value, None for "calibrated"."""
        value = self.threshold_spin.value()
        return None if value < 0 else value

    def start(self) -> None:
        self.show_message("")
        self.timeline.clear()
        self.history.clear()
        self.importance.set_window([])
        self.prediction_panel.set_prediction(None)
        self.predictions_seen = 0
        config = self.current_config()
        self.video.clear(f"loading {config.source} ...")
        self.controller.start(config)

    def stop(self) -> None:
        self.controller.stop(wait=True)
        self.video.clear("stopped: press Start (Ctrl+Enter) to run again")

    def toggle_pause(self) -> None:
        paused = self.controller.state == "running"
        self.controller.set_paused(paused)

    def toggle_recording(self) -> None:
        if self.controller.recording:
            self.controller.stop_recording()
            return
        if self.controller.pipeline is None:
            self.show_message("start a source first, then record it")
            self.record_action.setChecked(False)
            return
        default = str(Path.cwd() / f"star-har-{time.strftime('%Y%m%d-%H%M%S')}.mp4")
        path, _ = QFileDialog.getSaveFileName(self, "Record annotated video", default,
                                              "MP4 video (*.mp4);;AVI video (*.avi)")
        if path:
            self.controller.start_recording(path)
        else:
            self.record_action.setChecked(False)

    def open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", str(Path.cwd()), VIDEO_FILTER)
        if path:
            self._set_combo_text(self.source_box, path)
            self.start()

    def choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", self._combo_value(self.model_box),
                                              "star-har checkpoint (*.pt);;All files (*)")
        if path:
            self._set_combo_text(self.model_box, path)

    @staticmethod
    def _set_combo_text(box: QComboBox, text: str) -> None:
        """Select the entry whose value is ``text``, else type it in."""
        index = box.findData(text)
        if index >= 0:
            box.setCurrentIndex(index)
        else:
            box.setEditText(text)

    @staticmethod
    def _combo_value(box: QComboBox) -> str:
        """What an editable combo box stands for: a listed entry's value, else the typed text."""
        text = box.currentText().strip()
        index = box.findText(text)
        return box.itemData(index) if index >= 0 else text

    def show_message(self, text: str, error: bool = True) -> None:
        """A message above the video (errors in red); empty text hides it."""
        self.message.setVisible(bool(text))
        self.message.setText(text)
        colour = "#b3261e" if error else "#2d5f8b"
        self.message.setStyleSheet(f"background: {colour}; color: white; padding: 6px; border-radius: 4px")
        if text:
            self.statusBar().showMessage(text, 10000)

    # -- controller signals ----------------------------------------------------------------------
    def show_frame(self, update: FrameUpdate) -> None:
        if update.people is None:
            self.video.set_frame(update.frame.image, update.keypoints if update.person_found else None)
        else:  # everybody drawn as in the recorded video, each in their own colour
            self.video.set_frame(draw_people(update.frame.image.copy(), update.people, self._layout), None)
            self.people.set_people(update.people)
            self.people.show()
        self.show_metrics(update.metrics)

    def show_metrics(self, m: MetricsSnapshot) -> None:
        s = self.status_labels
        s["fps"].setText(f"capture {m.capture_fps:.1f} fps")
        s["pose"].setText(f"pose {_ms(m.pose_ms)}")
        s["model"].setText(f"model {_ms(m.inference_ms)}")
        s["latency"].setText(f"latency {_ms(m.latency_ms)}")
        s["dropped"].setText(f"dropped {m.frames_dropped + m.windows_dropped}")

    def _on_source_status(self, status: str, message: str) -> None:
        if status == "reconnecting":
            self.show_message(f"source lost: {message}")
        elif status == "running" and self.message.text().startswith("source lost"):
            self.show_message("source back: reconnected", error=False)

    def show_prediction(self, prediction: Prediction) -> None:
        self.predictions_seen += 1
        if not self.people.follows(prediction):  # another person's than the selected one's
            return
        self.prediction_panel.set_prediction(prediction)
        self.importance.set_window(prediction.importance, prediction.frame_indices,
                                   self.controller.thumbnails.get(prediction.frame_indices))
        self.timeline.add(prediction)
        text = prediction.label if prediction.state == ACTION else prediction.text()
        last = self.history.item(0)
        if last is None or not last.text().endswith(f"  {text}"):
            self.history.insertItem(0, f"{prediction.timestamps[-1]:7.1f} s  {text}")
            if self.history.count() > HISTORY_ROWS:
                self.history.takeItem(HISTORY_ROWS)

    def _on_started(self, description: dict) -> None:
        self._class_names = list(description["classes"])
        self.timeline.set_classes(self._class_names)
        self.video.set_layout(description["joint_layout"])
        self._layout = description["joint_layout"]
        self._engine_text = (f"{description['engine']} on {description['device']} · {description['model']} "
                             f"{description['modality']} · {Path(description['checkpoint']).name}")
        self.status_labels["engine"].setText(self._engine_text)
        self.importance.set_source(description["importance"])
        self.show_message("")

    def _on_finished(self, error: str) -> None:
        if error:
            self.show_message(f"stopped: {error}")
            what = {"source": "the source could not be played", "model": "the model could not be loaded"}
            self.video.clear(f"{what.get(self.controller.failed_stage, 'stopped by an error')}: "
                             "see the message above")
        else:
            self.statusBar().showMessage("the source ended", 10000)

    def _on_state(self, state: str) -> None:
        self.status_labels["state"].setText(state)
        active = state in ("running", "paused")
        self.pause_action.setEnabled(active)
        self.pause_action.setChecked(state == "paused")
        self.stop_action.setEnabled(active or state == "loading")
        self.record_action.setEnabled(active)

    def _on_recording(self, path: str) -> None:
        self.record_action.setChecked(bool(path))
        if path:
            self.show_message(f"recording the annotated stream to {path}", error=False)
        else:
            self.show_message("")

    def closeEvent(self, event: QCloseEvent) -> None:
        self.controller.shutdown()  # returns at once, even while a model loads
        super().closeEvent(event)
