"""``metallo info FILE``."""

from __future__ import annotations

from typer.testing import CliRunner

from metallo.cli import app

runner = CliRunner()


def test_info_shows_metadata_nodes_variables_and_provenance(full_specimen):
    path, added = full_specimen
    result = runner.invoke(app, ["info", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "S1" in out and "CP steel" in out and "2% nital" in out
    for node in added:
        assert node.rsplit("/", 1)[1] in out
    assert "image (y, x) 24×32 uint16" in out
    assert "image (y, x, channel) 24×32×3 uint8" in out
    assert "euler (y, x, angle) 12×16×3 float64  [rad]" in out
    assert "kam (y, x) 12×16 float32  [deg]" in out
    assert "labels (y, x) 24×32 uint8" in out
    assert "x: 32 points [um]" in out
    assert "provenance" in out and "make.quantities" in out and "create" in out


def test_info_on_a_bad_file_is_one_line_and_exit_1(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("not a specimen")
    result = runner.invoke(app, ["info", str(bad)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "not an HDF5 file" in lines[0] and "notes.h5" in lines[0]
    assert "Traceback" not in result.output


def test_info_on_a_missing_file(tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path / "gone.h5")])
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_file_names_are_printed_as_is_never_as_markup(tmp_path):
    for name in ("x[/b].h5", "sample[a].h5", "[red]boom[/red].h5"):
        result = runner.invoke(app, ["info", str(tmp_path / name)], env={"COLUMNS": "400"})
        assert result.exit_code == 1, result.output
        assert f"{name}: no such file" in result.output
        assert "Traceback" not in result.output


def test_a_file_of_nul_bytes_gives_a_short_one_line_error(tmp_path):
    bad = tmp_path / "zeros.ang"
    bad.write_bytes(b"\x00" * 20_000)
    result = runner.invoke(app, ["ebsd", str(bad)], env={"COLUMNS": "1000"})
    assert result.exit_code == 1
    assert result.output.startswith("error:") and len(result.output) < 600
    assert "\x00" not in result.output


def test_info_says_each_verdict_whole_failures_first(tmp_path):
    from metallo import names, synth
    from metallo.correlate import Grid, Registration
    from metallo.ebsd import map_image
    from metallo.specimen import Specimen

    path = tmp_path / "v.h5"
    spec = Specimen.create(path, specimen_id="V")
    synth.add_synthetic_specimen(spec, 2, ebsd_shape=(30, 30))
    lom, ebsd = spec[names.micrograph("lom")][names.IMAGE], map_image(spec[names.EBSD_MAP])
    reason = "forward and inverse registrations disagree by 7.3 px (median round trip > 3) " + "x" * 120
    for name, passed in (("ok", True), ("bad", False)):
        reg = Registration([], fixed_grid=Grid.of(lom), moving_grid=Grid.of(ebsd), method="identity",
                           quality={names.PASSED: passed, "failure_reasons": [] if passed else [reason]})
        spec.add(names.registration(name), reg.to_dataset(), step=names.STEP_REGISTER,
                 inputs=[names.micrograph("lom"), names.EBSD_MAP])
    spec.save()
    out = runner.invoke(app, ["info", str(path)], env={"COLUMNS": "80"}).output
    lines = [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert lines[0].startswith(f"FAIL {names.registration('bad')}: forward and inverse")
    assert lines[1] == f"PASS {names.registration('ok')}"
    assert "x" * 120 in "".join(out.split())  # the whole reason, wrapped or not
    bare = tmp_path / "b.h5"
    Specimen.create(bare, specimen_id="B").save()
    assert "checks: no node gives a verdict" in runner.invoke(app, ["info", str(bare)]).output
