"""demos.bench.request_cost's reading of callgrind dumps and its split by place and layer."""

from __future__ import annotations

from pathlib import Path

from demos.bench import request_cost

# A callgrind dump in its compressed form: "(id) name" defines a name, "(id)" refers back to
# it; the line after "calls=" is the inclusive cost of that call, not the caller's own.
DUMP = """\
version: 1
creator: callgrind-3.19.0
events: Ir
ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 1000
cob=(2) /venv/greenlet/_greenlet.cpython-311-x86_64-linux-gnu.so
cfi=(2) greenlet.cpp
cfn=(2) green_switch
calls=2 20
+1 500
+2 7
fn=(3) _PyObject_Malloc
5 40
ob=(2)
fl=(2)
fn=(2)
20 300
* 20
ob=(3) /lib/x86_64-linux-gnu/libc.so.6
fl=(3) ???
fn=(4) memcpy
0 60
"""


def test_self_costs_count_each_function_once_and_skip_inclusive_call_costs(tmp_path: Path) -> None:
    dump = tmp_path / "cg.1"
    dump.write_text(DUMP)
    costs = request_cost._self_costs(str(dump))
    assert costs == {
        ("/usr/lib/libpython3.11.so.1.0", "_PyEval_EvalFrameDefault"): 1007,
        ("/usr/lib/libpython3.11.so.1.0", "_PyObject_Malloc"): 40,
        ("/venv/greenlet/_greenlet.cpython-311-x86_64-linux-gnu.so", "green_switch"): 320,
        ("/lib/x86_64-linux-gnu/libc.so.6", "memcpy"): 60,
    }


def test_places_and_layers() -> None:
    assert request_cost._place("/x/libpython3.11.so.1.0", "_PyEval_EvalFrameDefault'2") == "bytecode loop"
    assert request_cost._place("/x/libpython3.11.so.1.0", "_PyObject_Malloc") == "CPython"
    assert request_cost._place("/x/greenlet/_greenlet.cpython-311.so", "green_switch") == "greenlet"
    assert request_cost._place("/x/uvloop/loop.cpython-311.so", "uv__io_poll") == "uvloop"
    assert request_cost._place("/x/python3.11", "main") == "other"
    assert request_cost._layer("knot/server.py:Knot.answer") == "server code"
    assert request_cost._layer("bare_greenlets/__main__.py:Server.converse") == "server code"
    assert request_cost._layer("bare_greenlets/__main__.py:Hub.run") == "loop, sockets, threads"
    assert request_cost._layer("greenloop/_hub.py:park") == "loop, sockets, threads"
    assert request_cost._layer("asyncio/events.py:Handle._run") == "loop, sockets, threads"


def test_table_totals_places_and_layers() -> None:
    results = {
        "knot-c": {
            "request": {"bytecode loop": 29_687.4, "CPython": 31_534.0},
            "connection": {"CPython": 120_076.0, "libc": 100.0},
            "bytecodes": {"knot/server.py:Knot.answer": 65.0, "greenloop/_hub.py:park": 72.0},
            "connection bytecodes": {"knot/server.py:Knot.connection": 84.0},
        }
    }
    lines = request_cost.table(results).splitlines()
    # per request = the places' sum; a place not seen is 0; per connection = its own sum
    assert "| knot-c | 61,221 | 29,687 | 31,534 | 0 | 0 | 0 | 0 | 0 | 120,176 |" in lines
    # bytecodes: the total, then the loop's layer and the server's, then the top functions
    assert "| knot-c | 137 | 72 | 65 | greenloop/_hub.py:park 72, knot/server.py:Knot.answer 65 |" in lines
    assert "| knot-c | 84 | 0 | 84 | knot/server.py:Knot.connection 84 |" in lines
