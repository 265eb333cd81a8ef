"""``convoy metrics serve`` and ``convoy worker --metrics-port`` that cannot listen say in
one line which option is the problem: the address (not one of this machine's, or not an
address at all) or the port (taken)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from .clikit import FLOW, GOOD, cli, one_line_error, workdir, write_jsonl

__all__ = ["workdir"]


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another socket listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _store(tmp: object) -> None:
    from pathlib import Path

    inputs = write_jsonl(Path(str(tmp)) / "in.jsonl", GOOD[:1])
    assert cli("run", FLOW, "--input", str(inputs)).code == 0


@pytest.mark.parametrize("addr", ["999.1.1.1", "192.0.2.1", "fe80::1"])
def test_metrics_serve_blames_a_bad_address(workdir: object, addr: str) -> None:
    _store(workdir)
    res = cli("metrics", "serve", "--addr", addr, "--port", "0")
    one_line_error(res, 2, f"--addr {addr}: cannot listen on this address")
    assert "--port" not in res.stderr


@pytest.mark.parametrize("addr", ["", "  "])
def test_metrics_serve_says_an_empty_address_is_empty(workdir: object, addr: str) -> None:
    """A new user's trial: ``--addr ''`` said "--addr : cannot listen on this address:
    Name or service not known", not that the value was empty."""
    _store(workdir)
    res = cli("metrics", "serve", "--addr", addr, "--port", "0")
    one_line_error(res, 2, "--addr is empty: give an address of this machine, such as "
                           "127.0.0.1, or 0.0.0.0 for all of them")


def test_metrics_serve_blames_a_taken_port(workdir: object, taken: int) -> None:
    _store(workdir)
    res = cli("metrics", "serve", "--port", str(taken))
    one_line_error(res, 2, f"--port {taken}: cannot listen on 127.0.0.1:{taken}")
    assert "in use" in res.stderr and "--addr" not in res.stderr


def test_worker_blames_a_bad_metrics_address(workdir: object) -> None:
    res = cli("worker", "cli_flows", "--metrics-port", "0", "--metrics-addr", "999.1.1.1")
    one_line_error(res, 2, "--metrics-addr 999.1.1.1: cannot listen on this address")
    assert "--metrics-port" not in res.stderr


def test_worker_blames_a_taken_metrics_port(workdir: object, taken: int) -> None:
    res = cli("worker", "cli_flows", "--metrics-port", str(taken))
    one_line_error(res, 2, f"--metrics-port {taken}: cannot listen on 127.0.0.1:{taken}")
    assert "--metrics-addr" not in res.stderr


@pytest.mark.parametrize("addr", ["", "  "])
def test_worker_says_an_empty_metrics_address_is_empty(workdir: object, addr: str) -> None:
    """As ``metrics serve --addr ''``: ``--metrics-addr ''`` served on 127.0.0.1 without a
    word (``''`` read as no address given), and ``'  '`` said nothing of the value."""
    res = cli("worker", "cli_flows", "--metrics-port", "0", "--metrics-addr", addr)
    one_line_error(res, 2, "--metrics-addr is empty: give an address of this machine, such "
                           "as 127.0.0.1, or 0.0.0.0 for all of them")


def test_worker_refuses_a_metrics_address_without_a_port(workdir: object) -> None:
    """--metrics-addr alone served nothing and said nothing."""
    one_line_error(cli("worker", "cli_flows", "--metrics-addr", "0.0.0.0"), 2,
                   "--metrics-addr '0.0.0.0' needs --metrics-port PORT")


@pytest.mark.parametrize("port", [70000, -1])
def test_metrics_serve_in_python_refuses_a_port_out_of_range(port: int) -> None:
    """A raw OverflowError from the socket module, before."""
    import convoy
    from convoy.observability import Metrics

    with pytest.raises(convoy.UserError, match=f"metrics port {port}: a TCP port is a whole "
                       "number from 0 to 65535"):
        Metrics().serve(port=port)


@pytest.mark.parametrize(("addr", "said"), [
    ("999.1.1.1", "metrics address '999.1.1.1' cannot be resolved (Name or service not "
                  "known): pass an IP address of this machine, such as addr='127.0.0.1' "
                  "(this machine alone) or addr='0.0.0.0' (all of them), or a host name "
                  "that resolves to one"),
    ("127.0.0.1:9464", "metrics address '127.0.0.1:9464' cannot be resolved (Name or "
                       "service not known): pass the host alone, and the port as port=: "
                       "serve(port=9464, addr='127.0.0.1')"),
    ("[::1]", "metrics address '[::1]' cannot be resolved (Name or service not known): "
              "pass the address without its brackets: addr='::1'"),
    ("", "metrics address '' is empty: pass an address of this machine, such as "
         "addr='127.0.0.1' (this machine alone) or addr='0.0.0.0' (all of them)"),
])
def test_metrics_serve_in_python_says_an_address_that_cannot_be_resolved(
        addr: str, said: str) -> None:
    """New user's trial: ``Metrics.serve(addr="999.1.1.1")`` raised the socket module's raw
    ``gaierror``. A UserError says what is wrong with the address and what to pass (the
    gaierror its cause); nothing is left listening."""
    import convoy
    from convoy.observability import Metrics

    with pytest.raises(convoy.UserError) as caught:
        Metrics().serve(port=0, addr=addr)
    # (the resolver's own words, in the parentheses, are the platform's)
    assert re.fullmatch(re.escape(said).replace(re.escape("(Name or service not known)"),
                                                r"\(.+\)"), str(caught.value)), caught.value
    assert isinstance(caught.value.__cause__, socket.gaierror)


@pytest.mark.parametrize("args", [("metrics", "serve", "--addr", "127.0.0.1:9464"),
                                  ("worker", "cli_flows", "--metrics-port", "0",
                                   "--metrics-addr", "localhost:9464")])
def test_an_address_with_a_port_says_where_the_port_goes(workdir: object,
                                                         args: tuple[str, ...]) -> None:
    """HOST:PORT given as the address (it said only 'Name or service not known'): the line
    says the port has an option of its own."""
    if args[0] == "metrics":
        _store(workdir)
    res = cli(*args)
    port_option = "--port" if args[0] == "metrics" else "--metrics-port"
    one_line_error(res, 2, "cannot listen on this address")
    assert f"give the host alone, and the port with {port_option}" in res.stderr, res.stderr


def test_a_bracketed_ipv6_address_with_a_port_says_where_the_port_goes(
        workdir: object) -> None:
    """``[::1]:9464``, as a URL writes it: the line says to give ``::1`` and the port with
    its option (it said to give an address of this machine, such as 127.0.0.1: ``::1``
    is one)."""
    _store(workdir)
    res = cli("metrics", "serve", "--addr", "[::1]:9464")
    one_line_error(res, 2, "cannot listen on this address")
    assert "give the host alone, and the port with --port: --addr ::1 --port 9464" in \
        res.stderr, res.stderr


def test_a_bracketed_ipv6_address_alone_says_to_drop_the_brackets(workdir: object) -> None:
    """A new user's trial: ``--addr '[::1]'``, copied from the URL the banner prints
    (``http://[::1]:PORT/metrics``), said to give an address of this machine, such as
    127.0.0.1, where ``::1`` is one: the line says to give it without the brackets."""
    _store(workdir)
    res = cli("metrics", "serve", "--addr", "[::1]")
    one_line_error(res, 2, "cannot listen on this address")
    assert "give the address without its brackets: --addr ::1" in res.stderr, res.stderr
