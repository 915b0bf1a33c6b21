"""The expression studio: pure compute (Studio), plots, and the widget driven by setting ``.value``.

Most properties hold for any weights, so they use small untrained models: a plain one
(zero-initialised deformation heads ⇒ AUs move nothing, but attention, camera, caching,
presets and export all work) and one whose deformation heads are randomised (so AU
edits do change the head). The "AU01 raises the brows and leaves the lips" test needs
a trained model: the shipped pretrained one (``train.pretrained()``, no training).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from emozone_lite import aus as aus_mod
from emozone_lite import widgets
from emozone_lite.attention import MODALITY_NAMES
from emozone_lite.head import load_head
from emozone_lite.model import EmoZoneLite, ModelConfig
from emozone_lite.widgets import ZONE_ORDER, Studio, expression_studio

AU01 = aus_mod.au_index("AU01")
SIZE = 48


@pytest.fixture(scope="module")
def head():
    return load_head()


@pytest.fixture(scope="module")
def plain_model(head):
    torch.manual_seed(0)
    return EmoZoneLite(ModelConfig(n_gaussians=600), head).eval()


@pytest.fixture(scope="module")
def random_model(head):
    """Untrained, but with non-zero deformation heads, so AU tokens move the Gaussians."""
    torch.manual_seed(1)
    m = EmoZoneLite(ModelConfig(n_gaussians=600), head).eval()
    with torch.no_grad():
        for p in m.deformation.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def studio(plain_model):
    return Studio(plain_model, "arctic_a0007.wav")


@pytest.fixture(scope="module")
def rstudio(random_model):
    return Studio(random_model, "arctic_a0007.wav")


@pytest.fixture(scope="module")
def trained_model():
    from emozone_lite import train

    return train.pretrained()


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


# ----------------------------------------------------------------- pure compute
def test_audio_tokens_are_encoded_once_and_match_encode(studio, plain_model):
    a, u = plain_model.encode(studio.mel_windows, studio.energy, studio.track)
    torch.testing.assert_close(studio.audio_tokens, a)
    torch.testing.assert_close(studio.au_tokens, u)
    assert studio.audio_tokens.shape[0] == studio.n_frames == studio.track.shape[0] == 100


def test_au_tokens_at_is_one_window_of_the_held_track(rstudio, random_model):
    """Fast path (one CIT-AE window) == the readable path (encode the clip with the edit held)."""
    t = 40
    a = rstudio.frame_aus(t)
    a[AU01] = 3.7
    fast = rstudio.au_tokens_at(t, a)
    _, ref = random_model.encode(rstudio.mel_windows, rstudio.energy, rstudio.edited_track({"AU01": 3.7}))
    torch.testing.assert_close(fast, ref[t], atol=1e-5, rtol=1e-5)
    changed = torch.nonzero((fast - rstudio.au_tokens[t]).abs().amax(-1) > 1e-6).flatten().tolist()
    assert changed == [AU01], "CIT-AE is channel-independent: only the edited AU's token may change"


def test_au_tokens_at_per_frame_encoder(head):
    torch.manual_seed(2)
    m = EmoZoneLite(ModelConfig(n_gaussians=300, temporal="per_frame"), head).eval()
    st = Studio(m, "arctic_a0007.wav")
    a = st.frame_aus(10)
    a[aus_mod.au_index("AU12")] = 2.5
    _, ref = m.encode(st.mel_windows, st.energy, st.edited_track({"AU12": 2.5}))
    torch.testing.assert_close(st.au_tokens_at(10, a), ref[10], atol=1e-5, rtol=1e-5)


def test_unchanged_aus_reuse_cached_tokens_and_states(rstudio):
    t = 12
    same = rstudio.au_tokens_at(t, rstudio.frame_aus(t))
    assert same.data_ptr() == rstudio.au_tokens[t].data_ptr()  # a view of the cache, nothing encoded
    s1 = rstudio.state(t)
    assert rstudio.state(t) is s1
    assert rstudio.state(t, rstudio.frame_aus(t)) is s1  # same AUs, same bias: no deform
    rstudio.render_frame(t, yaw=20.0, size=SIZE)
    assert rstudio.last_state is s1  # a camera change renders the cached head


def test_render_frame_matches_hand_render(rstudio, random_model):
    """The studio's frame = the deformed head rendered by hand from the studio's camera, over the
    portrait's scenery (the default for a model on the bundled head)."""
    from emozone_lite.render import rasterize

    assert rstudio.portrait is not None  # auto: the random model's head is the bundled head
    t, v = 55, 4.0
    track = rstudio.edited_track({"AU01": v})
    with torch.no_grad():
        a, u = random_model.encode(rstudio.mel_windows, rstudio.energy, track)
        st = random_model.deform(a[t : t + 1], u[t : t + 1])
    cam = rstudio.portrait.view(-15, 0.0, SIZE, rstudio.zoom)
    img, alpha, _ = rasterize(
        st.means[0],
        st.quats[0],
        st.scales[0],
        random_model.opacities,
        random_model.colors,
        cam.viewmat[None],
        cam.K[None],
        SIZE,
        SIZE,
    )
    from emozone_lite.head.portrait import render_scenery

    hand = img[0] + (1 - alpha[0]) * render_scenery(rstudio.portrait, cam)
    aus = rstudio.frame_aus(t)
    aus[AU01] = v
    lib = rstudio.render_frame(t, aus, yaw=-15, size=SIZE)
    assert lib.shape == (SIZE, SIZE, 3)
    torch.testing.assert_close(lib, hand, atol=1e-4, rtol=0)
    # and the edit is visible with these random heads
    assert (lib - rstudio.render_frame(t, yaw=-15, size=SIZE)).abs().max() > 1e-3


def test_plain_studio_renders_the_orbit_view_on_white(random_model):
    from emozone_lite.camera import Camera
    from emozone_lite.render import rasterize

    plain = Studio(random_model, "arctic_a0007.wav", portrait=False)
    assert plain.portrait is None and plain.scenery(plain.camera(0, SIZE)) is None
    t = 30
    with torch.no_grad():
        st = random_model.deform(*random_model.encode(plain.mel_windows, plain.energy, plain.track, torch.tensor([t])))
    cam = Camera.orbit(yaw_deg=10, width=SIZE, height=SIZE)
    img, _, _ = rasterize(st.means[0], st.quats[0], st.scales[0], random_model.opacities, random_model.colors,
                          cam.viewmat[None], cam.K[None], SIZE, SIZE, backgrounds=torch.ones(1, 3))  # fmt: skip
    torch.testing.assert_close(plain.render_frame(t, yaw=10, size=SIZE), img[0], atol=1e-4, rtol=0)


def test_portrait_scenery_is_cached_and_needs_a_matching_head(rstudio, head):
    cam = rstudio.camera(5.0, SIZE)
    first = rstudio.scenery(cam)
    assert rstudio.scenery(cam) is first  # rendered once per camera
    assert first.shape == (SIZE, SIZE, 3) and float(first.std()) > 0.05  # a picture, not a flat colour
    other = head.clone()
    other.means = other.means + 0.01  # a head the portrait was not built around
    m = EmoZoneLite(ModelConfig(n_gaussians=300), other).eval()
    assert Studio(m, "arctic_a0007.wav").portrait is None  # auto falls back to the plain background
    with pytest.raises(ValueError, match="does not fit this model's head"):
        Studio(m, "arctic_a0007.wav", portrait=True)
    with pytest.raises(ValueError, match="zoom must be > 0"):
        Studio(m, "arctic_a0007.wav", zoom=0)


def test_export_frames_equal_render_frame(rstudio):
    """The export holds an edit over the clip: each exported frame is what the studio showed."""
    t = 30
    clip = rstudio.render_clip({"AU12": 3.0}, frames=[t], size=SIZE)
    aus = rstudio.frame_aus(t)
    aus[aus_mod.au_index("AU12")] = 3.0
    torch.testing.assert_close(clip[0], rstudio.render_frame(t, aus, size=SIZE), atol=1e-4, rtol=0)


def test_bias_call_leaves_the_model_unchanged(studio, plain_model):
    before = plain_model.fusion.bias_table.detach().clone()
    B = torch.tensor([[5.0, -5.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    studio.render_frame(3, bias=B, size=SIZE)
    torch.testing.assert_close(plain_model.fusion.bias_table.detach(), before)
    m_default = studio.zone_mass(studio.state(3))
    m_b = studio.zone_mass(studio.state(3, bias=B))
    assert m_b[0, 0] > m_default[0, 0] + 0.3  # upper zone now listens to audio


def test_rendering_leaves_thread_counts_alone(studio):
    import numba

    n_t, n_n = torch.get_num_threads(), numba.get_num_threads()
    studio.clear_cache()
    studio.render_frame(7, yaw=5.0, size=SIZE)
    studio.render_frame(7, np.full(17, 1.0, np.float32), yaw=5.0, size=SIZE)
    assert (torch.get_num_threads(), numba.get_num_threads()) == (n_t, n_n)


def test_studio_threads_set_the_policy_once(plain_model):
    import numba

    n_t, n_n = torch.get_num_threads(), numba.get_num_threads()
    try:
        st = Studio(plain_model, "arctic_a0007.wav", threads=1)
        assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1)
        st.render_frame(3, size=SIZE)
        assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1), "a render must not flip the counts"
    finally:
        torch.set_num_threads(n_t)
        numba.set_num_threads(n_n)


def test_base_track_options(plain_model):
    st = Studio(plain_model, "arctic_a0007.wav", aus="happy")
    assert st.frame_aus(0)[aus_mod.au_index("AU12")] == pytest.approx(aus_mod.PRESETS["happy"]["AU12"])
    short = np.zeros((10, 17), np.float32)
    short[:, AU01] = 2.0
    st2 = Studio(plain_model, "arctic_a0007.wav", aus=short)  # resampled to the audio's 100 frames
    assert st2.track.shape == (100, 17) and float(st2.track[50, AU01]) == pytest.approx(2.0)


def test_bad_inputs(studio, plain_model, tmp_path):
    with pytest.raises(ValueError, match="EmoZoneLite"):
        Studio("not a model")
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        Studio(plain_model, "nope.wav")
    with pytest.raises(FileNotFoundError, match="audio file not found"):
        Studio(plain_model, tmp_path / "missing.wav")
    with pytest.raises(ValueError, match=r"frame t must be an integer in \[0, 99\]"):
        studio.render_frame(100)
    with pytest.raises(ValueError, match=r"shape \[17\]"):
        studio.render_frame(0, np.zeros(16))
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        studio.render_frame(0, np.full(17, 6.0))
    with pytest.raises(ValueError, match=r"shape \[3, 3\]"):
        studio.render_frame(0, bias=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        studio.render_frame(0, bias=torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError, match="at least 8 pixels"):
        studio.render_frame(0, size=4)
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        studio.edited_track({"AU01": 7})
    with pytest.raises(ValueError, match="unknown|AU"):
        studio.edited_track({"AU99": 1})
    with pytest.raises(ValueError, match=r"array \[T, 17\]"):
        Studio(plain_model, aus=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="threads"):
        Studio(plain_model, threads=0)
    with pytest.raises(ValueError, match="between 1 and 100"):
        studio.render_clip(frames=0)
    with pytest.raises(ValueError, match="consecutive"):
        studio.export_video(tmp_path / "x.mp4", frames=[0, 2], size=16)
    with pytest.raises(ValueError, match="no state yet"):
        Studio(plain_model).zone_mass()


@pytest.mark.parametrize("fusion", ["implicit", "attention"])
def test_models_without_a_bias_table(head, fusion):
    m = EmoZoneLite(ModelConfig(n_gaussians=300, fusion=fusion), head).eval()
    st = Studio(m)
    assert not st.has_bias and st.default_bias is None
    img = st.render_frame(5, size=SIZE)
    assert img.shape == (SIZE, SIZE, 3)
    mass = st.zone_mass()
    assert mass is None if fusion == "implicit" else mass.shape == (1, 3)
    with pytest.raises(ValueError, match="no zone x modality bias table"):
        st.render_frame(5, bias=torch.zeros(3, 3))
    app = expression_studio(studio=st, size=SIZE)
    assert all(s.disabled for s in app.bias_sliders.values()) and app.bias_reset.disabled
    assert fusion in app.bias_note.value
    assert app.current_bias() is None
    app.yaw.value = 20.0  # still renders
    assert app.n_updates == 1


# ----------------------------------------------------------------------- plots
def test_plots_return_figures(studio):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    studio.state(4)
    fig = widgets.plot_zone_mass(studio.zone_mass())
    fig2 = widgets.plot_au_edit(studio.track, studio.edited_track({"AU04": 2.0}), t=4)
    assert isinstance(fig, Figure) and isinstance(fig2, Figure)
    assert [line.get_label() for line in fig2.axes[0].get_lines() if not line.get_label().startswith("_")] == ["AU04"]
    plt.close(fig)
    plt.close(fig2)
    with pytest.raises(ValueError, match=r"shape \[3, 3\]"):
        widgets.plot_zone_mass(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\[T, 17\]"):
        widgets.plot_au_edit(np.zeros((5, 17)), np.zeros((4, 17)))


def test_png_bytes_round_trip():
    from emozone_lite.viz import to_uint8

    img = torch.rand(20, 30, 3)
    np.testing.assert_array_equal(_pixels(widgets.png_bytes(img)), to_uint8(img))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        widgets.png_bytes(torch.rand(20, 30))


# ---------------------------------------------------------------------- widget
@pytest.fixture()
def app(random_model):
    return expression_studio(random_model, "arctic_a0007.wav", size=SIZE)


def test_widget_layout_and_attributes(app):
    import ipywidgets as W

    assert isinstance(app, W.Widget)
    assert set(app.au_sliders) == set(aus_mod.AU_NAMES)
    assert set(app.bias_sliders) == {(z, m) for z in ZONE_ORDER for m in MODALITY_NAMES}
    assert set(app.preset_buttons) == set(aus_mod.PRESETS)
    assert isinstance(app.image, W.Image) and app.image.format == "png"
    assert _pixels(app.image.value).shape == (SIZE, SIZE, 3)
    assert isinstance(app.audio, W.Audio) and app.audio.value[:4] == b"RIFF"
    assert app.frame.max == app.studio.n_frames - 1
    # sliders grouped by FACS zone in the accordion
    groups = [[c.children[0].description for c in panel.children] for panel in app.au_panel.children]
    assert groups == [[n for n in aus_mod.AU_NAMES if aus_mod.FACS[n].zone == z] for z in ZONE_ORDER]
    # bias sliders start at the model's table
    B = app.studio.default_bias
    assert app.bias_sliders[("upper", "au")].value == pytest.approx(float(B[0, 1]), abs=1e-6)
    # ... and reach the ends bias_effect moves an entry to (widgets.BIAS_RANGE)
    assert {(s.min, s.max) for s in app.bias_sliders.values()} == {(-widgets.BIAS_RANGE, widgets.BIAS_RANGE)}


def test_au_slider_changes_image_and_holds_the_value(app):
    png0, st0 = app.image.value, app.studio.last_state
    app.au_sliders["AU01"].value = 4.5
    assert app.n_updates == 1 and app.overrides == {"AU01": 4.5}
    assert app.image.value != png0 and app.studio.last_state is not st0
    assert np.abs(_pixels(app.image.value).astype(int) - _pixels(png0)).max() > 0
    # the held value survives frame scrubbing; untouched AUs follow the track
    t = int(np.argmax(app.studio.track[:, aus_mod.au_index("AU45")].numpy()))  # a blink
    app.frame.value = t
    assert app.au_sliders["AU01"].value == 4.5
    assert app.au_sliders["AU45"].value == pytest.approx(round(float(app.studio.track[t, -1]), 1))
    assert app.au_sliders["AU45"].value > 1.0
    assert app.overrides == {"AU01": 4.5}  # syncing the sliders is not an edit
    app.reset_button.click()
    assert app.overrides == {} and app.au_sliders["AU01"].value == pytest.approx(
        round(float(app.studio.track[t, AU01]), 1)
    )


def test_yaw_changes_the_image_with_one_render(app):
    png0, st0 = app.image.value, app.studio.last_state
    app.yaw.value = 35.0
    assert app.studio.last_state is st0  # no deform: the head is cached
    assert np.abs(_pixels(app.image.value).astype(int) - _pixels(png0)).sum() > 1000


def test_bias_slider_changes_attention_mass(app):
    before = app.studio.zone_mass().clone()
    app.bias_sliders[("upper", "audio")].value = 6.0
    app.bias_sliders[("upper", "au")].value = -6.0
    after = app.studio.zone_mass()
    assert app.n_updates == 2
    assert after[0, 0] > before[0, 0] + 0.3 and after[0, 1] < before[0, 1] - 0.3  # upper zone: AU → audio
    torch.testing.assert_close(after[1], before[1], atol=0.05, rtol=0)  # lower zone barely changes
    assert "attention share" in app.info.value
    app.bias_reset.click()
    torch.testing.assert_close(app.current_bias(), app.studio.default_bias)


def test_preset_button_sets_the_sliders(app):
    app.preset_buttons["surprise"].click()
    want = aus_mod.preset("surprise")
    for n, s in app.au_sliders.items():
        assert s.value == pytest.approx(float(want[aus_mod.au_index(n)]), abs=1e-6)
    assert app.n_updates == 1  # 17 sliders, one render
    assert set(app.overrides) == set(aus_mod.AU_NAMES)
    np.testing.assert_allclose(app.current_aus(), want, atol=1e-6)
    app.preset_buttons["neutral"].click()
    assert all(s.value == 0.0 for s in app.au_sliders.values())


def test_export_writes_mp4_with_audio(app, tmp_path):
    from emozone_lite.viz import read_video_info

    app.au_sliders["AU12"].value = 3.0
    app.export_path, app.export_size, app.export_frames = tmp_path / "studio.mp4", 32, 8
    app.export_button.click()
    assert app.exported == tmp_path / "studio.mp4" and "wrote" in app.status.value
    info = read_video_info(app.exported)
    assert info["n_frames"] == 8 and info["has_audio"] and info["size"] == (32, 32)
    assert not app.export_button.disabled


def test_default_export_path_is_repo_outputs():
    p = widgets.default_export_path()
    assert p.name == "studio.mp4" and p.parent.name == "outputs" and (p.parent.parent / "data_samples").is_dir()


# -------------------------------------------------------------- trained model
@pytest.mark.slow
def test_au01_raises_the_brows_and_leaves_the_lips(trained_model):
    from emozone_lite.zones import subregion_indices

    sub = subregion_indices()
    brows, lips = sub["brows"], sub["lips"]
    app = expression_studio(trained_model, "arctic_a0007.wav", size=64)
    # the upper zone favours AU tokens (as in the default prior, made explicit)
    app.bias_sliders[("upper", "audio")].value = -4.0
    app.bias_sliders[("upper", "au")].value = 4.0
    v0, png0 = app.studio.last_state.vertices[0].clone(), app.image.value
    assert app.au_sliders["AU01"].value < 0.5
    app.au_sliders["AU01"].value = 4.5
    d = app.studio.last_state.vertices[0] - v0
    brow_up = float(d[brows, 1].mean())
    brow_move = float(d[brows].norm(dim=-1).mean())
    lip_move = float(d[lips].norm(dim=-1).mean())
    assert brow_up > 1e-5, f"AU01 should lift the brows (+y), got mean dy {brow_up:.2e}"
    assert lip_move < 0.05 * brow_move, f"lips moved {lip_move:.2e} vs brows {brow_move:.2e}"
    assert app.image.value != png0
    # with the upper zone routed to audio, AU01 no longer reaches the brows
    app.bias_sliders[("upper", "au")].value = -4.0
    app.bias_sliders[("upper", "audio")].value = 4.0
    app.au_sliders["AU01"].value = 0.0
    v_off = app.studio.last_state.vertices[0].clone()
    app.au_sliders["AU01"].value = 4.5
    brow_up_off = float((app.studio.last_state.vertices[0] - v_off)[brows, 1].mean())
    assert abs(brow_up_off) < 0.1 * brow_up, (brow_up_off, brow_up)


@pytest.mark.slow
def test_bias_effect_on_pixels_of_the_shipped_model(trained_model):
    """Issue 16's zone-bias check on rendered pixels: the upper zone's AU entry at the slider's end
    takes a surprise's brows away (detected AU01 + AU02 fall by >= 1) while the mouth keeps its speech;
    the lower zone's audio entry there stills the mouth."""
    from emozone_lite.studio import bias_effect

    st = Studio(trained_model, "arctic_a0007.wav", portrait=False)
    r = bias_effect(st, frames=slice(20, 44))
    assert (
        set(r["tables"])
        == set(r["brow_rise"])
        == set(r["mouth"])
        == set(r["images"])
        == {"model", "upper_au", "lower_audio"}
    )
    assert r["faces_missing"] == 0 and r["frames"] == list(range(20, 44))
    assert (
        r["tables"]["upper_au"][0][1] == -widgets.BIAS_RANGE and r["tables"]["lower_audio"][1][0] == -widgets.BIAS_RANGE
    )
    assert r["images"]["model"].shape == (256, 256, 3) and r["images"]["model"].dtype == np.uint8
    assert r["mouth"]["model"] == {"corr": pytest.approx(1.0), "range": pytest.approx(1.0)}
    assert r["brow_rise"]["model"] >= 1.0, r["brow_rise"]  # the surprise reaches the brows at all
    assert r["brow_rise"]["model"] - r["brow_rise"]["upper_au"] >= 1.0, r["brow_rise"]
    assert r["mouth"]["upper_au"]["corr"] >= 0.9 and r["mouth"]["upper_au"]["range"] >= 0.8, r["mouth"]
    assert r["mouth"]["lower_audio"]["range"] <= 0.25, r["mouth"]


def test_bias_effect_bad_inputs(head, studio):
    from emozone_lite.studio import bias_effect

    implicit = Studio(EmoZoneLite(ModelConfig(n_gaussians=300, fusion="implicit"), head), "arctic_a0007.wav")
    with pytest.raises(ValueError, match="no zone x modality bias table"):
        bias_effect(implicit)
    with pytest.raises(ValueError, match="preset must be one of"):
        bias_effect(studio, preset="joy")
    with pytest.raises(ValueError, match="AU"):
        bias_effect(studio, brow_aus=("AU99",))


def test_docstring_examples():
    import doctest

    from emozone_lite import studio as studio_mod

    failures, tried = doctest.testmod(studio_mod, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_export_message_shows_paths_relative_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert widgets._relative(tmp_path / "outputs" / "studio.mp4") == "outputs/studio.mp4"
    assert widgets._relative(tmp_path.parent / "studio.mp4") == "../studio.mp4"
    far = Path("/") / "x" / "y" / "z" / "w" / "studio.mp4"
    assert widgets._relative(far) == str(far)  # far away: as given
