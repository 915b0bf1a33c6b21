"""OpenFace 2.x CSV files: the AU format every talking-head project reads and writes.

OpenFace's ``FeatureExtraction`` writes one row per video frame: ``frame, face_id,
timestamp, confidence, success``, then gaze, landmarks, head pose and shape
parameters, then the 17 intensity AUs ``AU01_r … AU45_r`` (0–5) and 18 presence AUs
``AU01_c … AU45_c`` (0/1, with AU28). Headers after the first start with a space
(OpenFace separates with ``", "``).

* :func:`read_openface_csv` reads any CSV with ``AU*_r`` columns into an
  :class:`~emozone_lite.aus.AUTrack`; failed frames are kept, interpolated with
  :func:`~emozone_lite.aus.fill_failed_frames` and marked in ``track.success``.
* :func:`write_openface_csv` writes a track in the full 714-column layout
  (:data:`OPENFACE_COLUMNS`, from :func:`openface_columns`), optionally with a video's
  own timestamps and the 68 2-D landmarks (what :mod:`emozone_lite.track` writes).

The AU track itself (:class:`~emozone_lite.aus.AUTrack`, the FACS table) lives in
``emozone_lite.aus``, which also re-exports these names (``aus.read_openface_csv``).

Examples:
    >>> import numpy as np, tempfile, pathlib
    >>> from emozone_lite.aus import AUTrack
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "aus.csv"
    >>> write_openface_csv(AUTrack(np.full((50, 17), 1.5), fps=25.0), p)
    >>> back = read_openface_csv(p)
    >>> len(back), back.fps, float(back.au("AU12")[0])
    (50, 25.0, 1.5)
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from os import PathLike

import numpy as np

from .aus import _AU_INDEX, AU_NAMES, N_AUS, AUTrack, _normalise_au_name, fill_failed_frames
from .utils import atomic_write

__all__ = [
    "OPENFACE_AU_C",
    "OPENFACE_COLUMNS",
    "openface_columns",
    "read_openface_csv",
    "write_openface_csv",
]

#: AUs whose presence (``_c``) OpenFace 2.x classifies: the 17 plus AU28 (lip suck).
OPENFACE_AU_C: tuple[str, ...] = tuple(sorted(AU_NAMES + ("AU28",)))


def openface_columns(n_eye_landmarks: int = 56, n_face_landmarks: int = 68, n_model_modes: int = 34) -> tuple[str, ...]:
    """The column names of OpenFace 2.x ``FeatureExtraction`` output (all outputs on).

    Order as OpenFace's ``RecorderCSV::WriteHeader``: ``frame, face_id, timestamp,
    confidence, success``; gaze (8); eye landmarks ``eye_lmk_x_*, eye_lmk_y_*`` (2D) and
    ``eye_lmk_X_*, _Y_*, _Z_*`` (3D); head pose (6); 2D face landmarks ``x_*, y_*``;
    3D face landmarks ``X_*, Y_*, Z_*``; PDM parameters ``p_scale, p_rx, p_ry, p_rz,
    p_tx, p_ty, p_0 …``; ``AU*_r`` (17); ``AU*_c`` (18, with AU28).

    With the defaults that is 5 + 8 + 280 + 6 + 136 + 204 + 40 + 17 + 18 = **714** columns.

    Examples:
        >>> cols = openface_columns()
        >>> len(cols), cols[:3], cols[-1]
        (714, ('frame', 'face_id', 'timestamp'), 'AU45_c')
    """
    cols = ["frame", "face_id", "timestamp", "confidence", "success"]
    cols += ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
    for axis in ("x", "y", "X", "Y", "Z"):
        cols += [f"eye_lmk_{axis}_{i}" for i in range(n_eye_landmarks)]
    cols += ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
    for axis in ("x", "y", "X", "Y", "Z"):
        cols += [f"{axis}_{i}" for i in range(n_face_landmarks)]
    cols += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"]
    cols += [f"p_{i}" for i in range(n_model_modes)]
    cols += [f"{a}_r" for a in AU_NAMES]
    cols += [f"{a}_c" for a in OPENFACE_AU_C]
    return tuple(cols)


#: The full OpenFace 2.x column list (714 names) that :func:`write_openface_csv` writes.
OPENFACE_COLUMNS: tuple[str, ...] = openface_columns()

_AU_R = re.compile(r"^AU(\d+)_r$")


def read_openface_csv(
    path: str | PathLike,
    *,
    min_confidence: float = 0.5,
    fps: float | None = None,
    face_id: int | None = None,
    strict: bool = False,
) -> AUTrack:
    """Read the AU intensities of an OpenFace 2.x CSV (``FeatureExtraction`` output).

    Accepts any CSV with ``AU*_r`` columns: header names are stripped (OpenFace
    writes ``", "`` separators, so names start with a space), extra columns are
    ignored, blank lines are skipped.

    Failed frames — ``success == 0``, ``confidence < min_confidence``, or NaN / empty
    AU cells — are **kept and interpolated** linearly from the neighbouring good
    frames (edges hold the nearest good value), so the track stays aligned with the
    video and the audio; ``track.success`` marks them False. The frame rate comes
    from the ``timestamp`` column (the integer or NTSC rate that explains the
    ms-rounded timestamps, else their least-squares rate), unless ``fps`` is given;
    without timestamps it is 25.

    AUs of the 17 that the file lacks are filled with 0 (with a warning).

    Args:
        path: the CSV file.
        min_confidence: frames with a lower ``confidence`` count as failed.
        fps: override the frame rate.
        face_id: which face to keep when the file tracks several (``face_id`` column).
        strict: raise instead of clamping intensities outside [0, 5].

    Returns:
        :class:`AUTrack` with ``values [T, 17]``, ``fps``, ``confidence`` and ``success``.

    Raises:
        ValueError: no ``AU*_r`` columns; a row with the wrong number of fields
            (naming the line); a non-numeric cell (naming line and column); several
            faces without ``face_id``; no successfully tracked frame.
    """
    text = _read_text(path)
    rows = _csv_rows(text, path)
    header_line, header = rows[0]
    names = [h.strip() for h in header]
    au_cols = {}
    for j, n in enumerate(names):
        m = _AU_R.match(n)
        if m:
            au_cols[_normalise_au_name(f"AU{m.group(1)}")] = j
    if not au_cols:
        raise ValueError(
            f"AU CSV has no AU*_r columns; expected OpenFace 2.x output ({path}, header on line {header_line})"
        )
    body = rows[1:]
    if not body:
        raise ValueError(f"{path}: AU CSV has a header but no data rows")
    for line, row in body:
        if len(row) != len(names):
            raise ValueError(
                f"{path}, line {line}: {len(row)} fields but the header has {len(names)}; "
                "the CSV is ragged (truncated or hand-edited?)"
            )
    col = {n: j for j, n in enumerate(names)}

    def numeric(j: int, allow_nan: bool = False) -> np.ndarray:
        out = np.empty(len(body), dtype=np.float64)
        for k, (line, row) in enumerate(body):
            cell = row[j].strip()
            if cell == "" and allow_nan:
                out[k] = np.nan
                continue
            try:
                out[k] = float(cell)
            except ValueError:
                raise ValueError(f"{path}, line {line}, column {names[j]!r}: {cell!r} is not a number") from None
        return out

    keep = np.ones(len(body), dtype=bool)
    if "face_id" in col:
        ids = numeric(col["face_id"])
        uniq = np.unique(ids)
        if face_id is None and uniq.size > 1:
            raise ValueError(
                f"{path}: the CSV tracks {uniq.size} faces (face_id {uniq.astype(int).tolist()}); "
                "pass face_id= to choose one"
            )
        if face_id is not None:
            keep = ids == face_id
            if not keep.any():
                raise ValueError(f"{path}: no rows with face_id {face_id}; present: {uniq.astype(int).tolist()}")
    idx = np.nonzero(keep)[0]
    if "frame" in col:
        frames = numeric(col["frame"])[idx]
        idx = idx[np.argsort(frames, kind="stable")]

    values = np.zeros((len(body), N_AUS), dtype=np.float64)
    missing = [a for a in AU_NAMES if a not in au_cols]
    for a, j in au_cols.items():
        if a in _AU_INDEX:
            values[:, _AU_INDEX[a]] = numeric(j, allow_nan=True)
    if missing:
        warnings.warn(f"{path}: no columns for {', '.join(missing)}; they are set to 0", UserWarning, stacklevel=2)
    values = values[idx]

    ok = np.ones(len(idx), dtype=bool)
    confidence = None
    if "success" in col:
        ok &= numeric(col["success"])[idx] > 0.5
    if "confidence" in col:
        confidence = numeric(col["confidence"])[idx]
        ok &= confidence >= min_confidence
    nan_rows = ~np.isfinite(values).all(axis=1)
    if nan_rows.any():
        warnings.warn(
            f"{path}: {int(nan_rows.sum())} frame(s) with NaN/empty AU values are treated as failed and interpolated",
            UserWarning,
            stacklevel=2,
        )
    ok &= ~nan_rows
    if not ok.any():
        raise ValueError(
            f"{path}: no successfully tracked frame (success == 0 or confidence < {min_confidence} "
            "everywhere); nothing to interpolate from"
        )
    values = fill_failed_frames(values, ok)

    if fps is None:
        fps = 25.0
        if "timestamp" in col and len(idx) >= 2:
            fps = _fps_from_timestamps(numeric(col["timestamp"])[idx], fps)
    return AUTrack(values, fps=fps, confidence=confidence, success=ok, strict=strict)


def _fps_from_timestamps(ts: np.ndarray, default: float) -> float:
    """Frame rate from (ms-rounded) timestamps.

    The least-squares slope of timestamp vs frame index gives a raw rate; if an
    integer rate or an NTSC rate (23.976, 29.97, 59.94) explains every timestamp to
    within OpenFace's 1 ms rounding, that rate is returned, else the raw rate
    rounded to 3 decimals.
    """
    if not np.isfinite(ts).all():
        return default
    i = np.arange(ts.size)
    slope = np.polyfit(i, ts, 1)[0]
    if not slope > 0:
        return default
    raw = 1.0 / slope
    for c in (float(round(raw)), 24000 / 1001, 30000 / 1001, 60000 / 1001):
        if c > 0 and np.max(np.abs(ts - ts[0] - i / c)) <= 1.1e-3:
            return round(c, 3) if c != round(c) else c
    return round(raw, 3)


def _read_text(path) -> str:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason}); expected an OpenFace CSV") from None


def _csv_rows(text: str, path) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    rows = []
    for row in reader:
        if not row or all(c.strip() == "" for c in row):
            continue
        rows.append((reader.line_num, row))
    if not rows:
        raise ValueError(f"{path}: the CSV is empty; expected OpenFace 2.x output with AU*_r columns")
    return rows


def write_openface_csv(
    track: AUTrack,
    path: str | PathLike,
    *,
    presence_threshold: float = 1.0,
    decimals: int = 3,
    timestamps=None,
    landmarks=None,
) -> None:
    """Write ``track`` as an OpenFace 2.x CSV with the full 714-column layout.

    The layout is :data:`OPENFACE_COLUMNS` with OpenFace's ``", "`` separator (so
    header names after the first start with a space), which pandas, OpenFace's own
    tools and talking-head data loaders read. Columns the track does not know
    (gaze, eye landmarks, pose, 3-D landmarks, PDM) are 0. ``frame`` counts from 1,
    ``timestamp`` is ``(frame - 1) / fps`` unless ``timestamps`` are given,
    ``confidence`` / ``success`` come from the track (1 when absent), ``AU*_c`` is 1
    where the written ``AU*_r >= presence_threshold`` (AU28_c is 0). Intensities keep
    ``decimals`` decimals (OpenFace itself writes 2). The file is written atomically.

    Args:
        track: the AU track (``values [T, 17]``, ``confidence``, ``success``).
        path: the CSV to write.
        presence_threshold: ``AU*_c = AU*_r >= presence_threshold``.
        decimals: decimals of the intensities.
        timestamps: optional ``[T]`` seconds per frame (e.g. a video's presentation
            timestamps, variable frame rate allowed), written with 3 decimals like OpenFace.
        landmarks: optional ``[T, 68, 2]`` 2-D face landmarks in pixels, iBUG 68-point
            order, written to ``x_0 … x_67, y_0 … y_67`` (2 decimals; NaN rows as 0).

    Raises:
        TypeError: ``track`` is not an :class:`AUTrack`.
        ValueError: ``timestamps`` / ``landmarks`` of the wrong shape, or non-finite timestamps.
    """
    if not isinstance(track, AUTrack):
        raise TypeError(f"write_openface_csv: expected an AUTrack, got {type(track).__name__}")
    T = len(track)
    conf = track.confidence if track.confidence is not None else np.ones(T, np.float32)
    succ = track.success if track.success is not None else np.ones(T, bool)
    if timestamps is None:
        ts = np.arange(T) / track.fps
    else:
        ts = np.asarray(timestamps, dtype=np.float64)
        if ts.shape != (T,) or not np.isfinite(ts).all():
            raise ValueError(f"timestamps: expected [{T}] finite seconds (one per frame), got shape {ts.shape}")
    n_mid = OPENFACE_COLUMNS.index("AU01_r") - 5  # gaze … PDM columns
    mid = ["0"] * n_mid
    lmk = None
    if landmarks is not None:
        lmk = np.asarray(landmarks, dtype=np.float64)
        if lmk.shape != (T, 68, 2):
            raise ValueError(f"landmarks: expected [{T}, 68, 2] pixels (iBUG 68-point order), got shape {lmk.shape}")
        lmk = np.where(np.isfinite(lmk), lmk, 0.0)
        x0 = OPENFACE_COLUMNS.index("x_0") - 5
        y0 = OPENFACE_COLUMNS.index("y_0") - 5
    middle = ", ".join(mid)
    c_idx = [(_AU_INDEX.get(a)) for a in OPENFACE_AU_C]
    with atomic_write(path, "w") as f:
        f.write(", ".join(OPENFACE_COLUMNS) + "\n")
        for t in range(T):
            r = np.round(track.values[t].astype(np.float64), decimals)  # _c agrees with the _r written
            au_r = ", ".join(f"{x:.{decimals}f}" for x in r)
            au_c = ", ".join("0" if j is None else str(int(r[j] >= presence_threshold)) for j in c_idx)
            if lmk is not None:
                mid[x0 : x0 + 68] = [f"{v:.2f}" for v in lmk[t, :, 0]]
                mid[y0 : y0 + 68] = [f"{v:.2f}" for v in lmk[t, :, 1]]
                middle = ", ".join(mid)
            f.write(f"{t + 1}, 0, {ts[t]:.3f}, {conf[t]:.2f}, {int(succ[t])}, {middle}, {au_r}, {au_c}\n")
