"""Verifier errors on circuits read from files name the file, the line and the node's id in the
file (``file:line: node <id>: ...``), with the line's text under the message."""

from __future__ import annotations

import re

import pytest

import pccc
import pccc.formats as formats
from pccc.cli.main import main
from pccc.ir import VerifyError, parse, verify

CASES = [
    # (name, text, line, id, words, text of the line)
    ("fast.jpc", "jpc 5\nL 10 0 1\nL 11 0 2\nL 12 0 -1\nP 13 0 2 10 12\nS 14 0 2 13 -0.5 11 -0.9\n",
     5, "13", "not decomposable: children node 10 (line 2) and node 12 (line 4)",
     "P 13 0 2 10 12"),
    ("slow.jpc", "jpc 5\nL 10 0 1\nc a comment\nL 11 0 2\nL 12 0 -1\nS 14 0 2 10 -0.5 11 -0.9\n"
     "P 13 0 1 14\n", 6, "14", "not smooth: children node 10 (line 2) and node 11 (line 4)",
     "S 14 0 2 10 -0.5 11 -0.9"),
    ("dom.jpc", "c x\njpc 3\nL 0 0 1\nG 1 0 1 0.0 1.0\nS 2 0 2 0 -0.69 1 -0.69\n", 4, "1",
     "variable 0 has 2 values at node 0 (line 3) but a continuous domain", "G 1 0 1 0.0 1.0"),
    ("e.psdd", "psdd 10\nL 0 0 1\nL 1 0 2\nL 2 0 -1\nL 3 0 3\nD 7 0 2 0 1 -0.5 2 3 -0.9\n",
     6, "7", "not smooth: children node 7 (element 0) (line 6) and node 7 (element 1)",
     "D 7 0 2 0 1 -0.5 2 3 -0.9"),
    ("el.psdd", "psdd 10\nL 0 0 1\nL 1 0 2\nL 2 0 -1\nD 7 0 2 0 1 -0.5 2 2 -0.9\n", 5,
     "7 (element 1)", "a child appears twice", "D 7 0 2 0 1 -0.5 2 2 -0.9"),
    ("x.spn", "(2 2)\nv 0 1\nv 0 0\nv 1 1\n* 0 1\n+ 3 -0.5 2 -0.9\nEOF\n", 5, "3",
     "children node 0 (line 2) and node 1 (line 3) share variable 0", "* 0 1"),
    ("x.pcir", "pcir 1 L0\ncircuit num_vars=2\n%0 = input bernoulli n=1 param=@p var=0\n"
     "%1 = input bernoulli n=1 param=@p var=1\n\n%2 = sum(%0, %1) n=1 param=@w\n"
     "param @p f64[1] = [0.5]\nparam @w f64[1, 2] = [[0.5, 0.5]]\n", 6, "%2",
     "children node %0 (line 3) and node %1 (line 4)", "%2 = sum(%0, %1) n=1 param=@w"),
]


@pytest.mark.parametrize("name,text,line,nid,words,src", CASES, ids=[c[0] for c in CASES])
def test_verify_names_file_line_and_id(tmp_path, name, text, line, nid, words, src):
    p = tmp_path / name
    p.write_text(text)
    c = formats.load(p)
    with pytest.raises(VerifyError) as e:
        verify(c)
    head, _, context = str(e.value).partition("\n")
    assert head.startswith(f"{p}:{line}: node {nid}: "), head
    assert words in head
    assert context.strip() == src
    with pytest.raises(VerifyError, match=f"^{p}:{line}: node "):
        pccc.compile(c, backend="torch")


def test_the_cli_prints_two_lines(tmp_path, capsys):
    name, text, line, nid, _, src = CASES[0]
    p = tmp_path / name
    p.write_text(text)
    assert main(["info", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0], f"    {src}"] and err[0].startswith(f"pccc: error: {p}:{line}: node "
                                                               f"{nid}: ")


def test_a_circuit_from_text_names_its_lines():
    name, text, line, nid, words, src = CASES[-1]
    with pytest.raises(VerifyError, match=rf"^<string>:{line}: node %2: .*{re.escape(words)}"):
        verify(parse(text))
