"""Crontab lines as cron reads them (legacy/cron/generic.py): % and \\% in commands, quotes, #, the
environment per position, and wrapping that cron reads back to the same command and stdin."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from legacy.cron.generic import exec_prefix, read_lines, split_percent, unwrap_text, wrap_line
from legacy.cron.jobside import encode_command

CASES = [
    "echo plain",
    "date +\\%F",
    "cat % line one%line two",
    "printf '%s\\n' a",  # an unescaped % inside quotes still ends the command for cron
    "echo 'it'\"'\"'s' \\%done",
    "echo \"a # b\" # trailing comment",
    "echo back\\\\slash \\\\%x",
    "mail -s 'hi' ops@example.com %Dear ops,%%all good.\\%%",
    "cd /tmp && ls | wc -l > /dev/null 2>&1; echo $?",
    "echo trailing\\",
]


@pytest.mark.parametrize("command", CASES)
def test_wrapping_keeps_what_the_shell_and_stdin_receive(command):
    line = read_lines(f"SHELL=/bin/sh\n5 4 * * * {command}")[1]
    wrapped = wrap_line(line, "job-x", exec_prefix("/opt/venv/bin/python", "/srv/cutover home"))
    back = read_lines(f"SHELL=/bin/sh\n{wrapped}")[1]
    assert back.kind == "wrapped" and back.job_id == "job-x" and back.expr == line.expr
    shell_part, stdin = split_percent(back.command_raw)
    argv = shlex.split(shell_part)
    assert argv[argv.index("--") + 1:] == ["/bin/sh", "-c", line.shell_part]
    assert stdin == line.stdin
    assert argv[argv.index("--home") + 1] == "/srv/cutover home"


@pytest.mark.parametrize("command", CASES)
def test_encode_command_is_the_inverse_of_cron_reading(command):
    shell_part, stdin = split_percent(command)
    assert split_percent(encode_command(shell_part, stdin)) == (shell_part, stdin)


def test_percent_rules_as_cron_applies_them():
    assert split_percent("a\\%b % x%y\\%z") == ("a%b ", " x\ny%z\n")
    assert split_percent("no stdin") == ("no stdin", None)
    assert split_percent("ends%") == ("ends", "")
    out = subprocess.run(["/bin/sh", "-c", split_percent("cat % hello%world")[0]],
                         input=split_percent("cat % hello%world")[1].encode(), capture_output=True).stdout
    assert out == b" hello\nworld\n"


def test_lines_and_environment_per_position():
    text = ("A=1\n@reboot x\n@weekly y\nCRON_TZ=Europe/Berlin\n  # c\n0 1 31 2 * never\n*/5 * * jan-mar mon z\n"
            "not a line\n")
    ls = read_lines(text)
    assert [ln.kind for ln in ls] == ["env", "reboot", "job", "env", "comment", "invalid", "job", "invalid"]
    assert ls[2].env == {"A": "1"} and ls[2].expr == "0 0 * * 0"
    assert ls[6].env == {"A": "1", "CRON_TZ": "Europe/Berlin"}


def test_unwrap_refuses_a_hand_edited_line():
    from cutover.core.errors import InputError

    with pytest.raises(InputError, match="no longer the line"):
        unwrap_text("0 1 * * * edited by hand\n", {"j": ("0 1 * * * wrapped", "0 1 * * * original")})
    assert unwrap_text("x\n#cutover-paused# W\n", {"j": ("W", "O")}) == "x\nO\n"
