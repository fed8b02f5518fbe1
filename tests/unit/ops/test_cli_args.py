"""The `parley` command's arguments: bad ones are one line and exit 2 before anything is touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from api.cli.main import build_parser, main
from api.cli.progress import CliError
from api.cli.projections import status_table
from api.cli.replay import parse_stream, parse_user
from domain.names import username_stream_id
from infra.rebuild import PartitionStatus, ProjectionStatus, RebuildReport, projection_names
from tests.conftest import REPO_ROOT
from tests.unit.app.scenario import INDEX_KEY

CONVERSATION = "6f1c1f52-8c1e-4f0b-9a52-5d7c2f6f0e11"


def parley(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli.main", *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("parley ") and out != "parley unknown"


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--port", "99999"],
        ["up", "--port", "0"],
        ["up", "--port", "-1"],
        ["up", "--port", "http"],
        ["up", "--host", "256.1.1.1"],
        ["up", "--host", "1.2.3"],
        ["up", "--host", ""],
        ["up", "--host", "no-such-host.invalid"],
        ["up", "--host", "8.8.8.8"],  # a valid address, but not one of this machine's
        ["up", "--gateways", "0"],
        ["up", "--gateways", "17"],
        ["up", "--workers", "two"],
        ["up", "--workers", "-1"],
    ],
)
def test_bad_up_arguments_touch_no_disk(tmp_path: Path, argv: list[str]) -> None:
    data_dir = tmp_path / "data"
    result = parley(*argv, "--data-dir", str(data_dir), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert argv[1] in lines[0] and "Traceback" not in lines[0]
    assert not data_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_gateway_checks_its_port_and_host_too(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["gateway", "--port", "70000"], ["gateway", "--host", "300.0.0.1"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("parley gateway: argument --")


def option_help(*path: str) -> dict[str, str | None]:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if a.dest in ("command", "audit_command", "projections_command"))
        parser = sub.choices[name]  # type: ignore[index]
    return {a.dest: a.help for a in parser._actions}


@pytest.mark.parametrize(
    "path",
    [("up",), ("gateway",), ("worker",), ("replay",), ("audit", "verify"), ("projections", "status"),
     ("projections", "rebuild")],
)  # fmt: skip
def test_every_option_has_help(path: tuple[str, ...]) -> None:
    helps = option_help(*path)
    assert all(text for text in helps.values()), helps


def test_rebuild_help_lists_the_valid_names_from_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["projections", "rebuild", "--help"])
    out = capsys.readouterr().out
    names = projection_names()
    assert {"users", "conversations", "messages", "audit"} <= set(names)
    assert f"valid names: {', '.join(names)}" in " ".join(out.split())


def test_stream_accepts_what_clients_and_operators_know() -> None:
    assert parse_stream(CONVERSATION, INDEX_KEY) == f"conversation:{CONVERSATION}"
    assert parse_stream(f"conversation:{CONVERSATION}", INDEX_KEY) == f"conversation:{CONVERSATION}"
    assert parse_stream(f" {CONVERSATION.upper()} ", INDEX_KEY) == f"conversation:{CONVERSATION}"
    assert parse_stream("username:Alice", INDEX_KEY) == username_stream_id("alice", INDEX_KEY)  # as at registration
    assert parse_stream(None, INDEX_KEY) is None
    user = "5f0c6a8e-0f5b-4c1e-9d7a-3b2e1c0d9f8a"
    assert parse_stream(f"account:{user.upper()}", INDEX_KEY) == f"account:{user}"
    for bad in (
        "",
        "   ",
        "conversation:",
        "conversation:nope",
        "nope",
        "username:x",
        "message:" + CONVERSATION,
        "account:x",
    ):
        with pytest.raises(CliError) as refused:
            parse_stream(bad, INDEX_KEY)
        assert refused.value.status == 2


def test_user_must_be_a_user_id() -> None:
    assert parse_user(CONVERSATION.upper()) == CONVERSATION
    assert parse_user(None) is None
    with pytest.raises(CliError) as refused:
        parse_user("nobody")
    assert refused.value.status == 2 and "invalid --user 'nobody'" in refused.value.message


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["replay", "--stream", ""], "--stream is empty"),
        (["replay", "--user", "nobody"], "invalid --user"),
        (["replay", "--stream", "not-a-conversation"], "invalid --stream"),
    ],
)
def test_replay_refuses_bad_filters_before_reaching_any_server(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A data dir with nothing running: the filter is refused first, so the message is about it.
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err


def test_nothing_to_reach_is_one_line_naming_what_was_tried(tmp_path: Path) -> None:
    result = parley("replay", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert "no --data-dir given" in result.stderr and str(tmp_path / ".parley") in result.stderr


def test_the_rebuild_report_keeps_set_up_out_of_the_rate() -> None:
    report = RebuildReport(
        "messages", "rm_messages_g3", 3, "rm_messages_g2", records=1000, seconds=5.0, setup_seconds=2.7,
        fold_seconds=0.5,
    )  # fmt: skip
    assert report.rate == 2000
    line = report.summary()
    assert "1,000 log records folded in 0.5 s (2,000 records/s)" in line
    assert "set-up 2.7 s" in line and "whole run 5.0 s" in line and "dropped rm_messages_g2" in line


def test_status_shows_every_source_of_a_projection() -> None:
    p = PartitionStatus
    audit = ProjectionStatus(
        "audit", "rm_audit_g1", 1, 9,
        [p("x.events", 0, 10, 12), p("x.events", 1, 5, 5), p("x.rejections", 0, 3, 3), p("x.refusals", 0, 1, 4)],
        ("x.events", "x.rejections", "x.refusals"),
    )  # fmt: skip
    assert [(s["topic"], s["lag"]) for s in audit.to_json()["sources"]] == [
        ("x.events", 2),
        ("x.rejections", 0),
        ("x.refusals", 3),
    ]
    assert audit.to_json()["lag"] == 5
    lines = status_table([audit])
    assert lines[0].split() == ["NAME", "COLLECTION", "GEN", "DOCUMENTS", "SOURCE", "POSITION", "LAG"]
    assert lines[1].split() == ["audit", "rm_audit_g1", "1", "9", "x.events", "15", "2"]
    assert lines[2].split() == ["x.rejections", "3", "0"]
    assert lines[3].split() == ["x.refusals", "1", "3"]
    assert lines[4].split() == ["(all", "sources)", "19", "5"]
