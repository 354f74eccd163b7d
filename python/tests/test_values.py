"""Values crossing to the workers and back: every type vial sends, both ways, and what it refuses.

To a worker and back is one round trip: the value goes in as a variable and comes back through
_return, so each case checks the host's conversion, the worker's, and the wire between. Values
vial cannot send raise at the call (TypeError / ValueError naming the type and where it sits);
a value the code passes to _return that cannot cross is the call's PythonError.
"""

import enum
import math
import sys

import pytest

import vial
from conftest import BOUND

ROUND_TRIP = "_return(v)"


def round_trip(pool, value):
    return pool.run_async(ROUND_TRIP, v=value).result(BOUND)[0]


def made_in_worker(pool, expression):
    return pool.run_async(f"_return({expression})").result(BOUND)[0]


def made_in_worker_source(pool, source):
    return pool.run_async(source).result(BOUND)[0]


def nested_lists(depth):
    """A list whose innermost list sits `depth` levels below it."""
    outer = inner = []
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


# ---- every type, both ways ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, False,
    0, 1, -1, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64, 2**200, -(2**200),
    0.0, -0.0, 1.5, -2.25e-300, 1e308, math.inf, -math.inf,
    "", "text", "héllo wörld ✓ 𝄞 中文", "a\0b", "\n\t\r",
    b"", b"bytes", b"\0\xff\0", bytes(range(256)),
    [], (), {}, [1, "two", 3.0], (1, (2, (3,))), {"a": 1, "b": [2, 3]}, {"": None},
    [None, True, 1, 1.5, "s", b"b", [1], (2,), {"k": {"deeper": ({"deepest": [b"x"]},)}}],
], ids=repr)
def test_value_crosses_both_ways_unchanged(pool, value):
    back = round_trip(pool, value)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


def test_nan_crosses_both_ways(pool):
    assert math.isnan(round_trip(pool, math.nan))


def test_int_of_more_than_4300_digits_crosses_both_ways(pool):
    # Python 3.11 refuses int <-> str past 4300 digits; vial's ints have any size.
    big = 7**20000  # 16,902 digits
    assert round_trip(pool, big) == big
    assert round_trip(pool, -big) == -big
    assert sys.get_int_max_str_digits() == 4300, "the host's own limit is left as it was"


def test_int_made_in_worker_of_any_size_reaches_host(pool):
    assert made_in_worker(pool, "-(3**20000)") == -(3**20000)


def test_bytearray_arrives_as_bytes(pool):
    back = round_trip(pool, bytearray(b"mutable\0"))
    assert back == b"mutable\0" and type(back) is bytes


def test_tuple_and_list_keep_their_type_when_nested(pool):
    value = {"t": (1, [2, (3,)]), "l": [(4,), [5]]}
    back = round_trip(pool, value)
    assert back == value
    assert type(back["t"]) is tuple and type(back["t"][1]) is list
    assert type(back["l"][0]) is tuple


def test_dict_keeps_its_order(pool):
    value = {k: i for i, k in enumerate("zyxwvu")}
    assert list(round_trip(pool, value)) == list("zyxwvu")


def test_every_variable_reaches_the_code(pool):
    source = "_return(a)\n_return(b)\n_return(c)"
    assert pool.run_async(source, a=1, b="two", c=[3]).result(BOUND) == [1, "two", [3]]


def test_no_return_gives_empty_list(pool):
    assert pool.run_async("x = 1").result(BOUND) == []


def test_values_made_in_the_worker_arrive_as_python_values(pool):
    assert made_in_worker(pool, "(None, True, 10**30, 0.5, 'é', b'\\0', [], {'k': ()})") == (
        None, True, 10**30, 0.5, "é", b"\0", [], {"k": ()})


def test_nesting_of_200_levels_crosses_both_ways(pool):
    # The deepest nesting vial sends as a variable comes back through _return too.
    value = nested_lists(200)
    assert round_trip(pool, value) == value


def test_nesting_of_200_levels_made_in_the_worker_reaches_the_host(pool):
    source = "v = []\nfor _ in range(200):\n    v = [v]\n_return(v)"
    assert made_in_worker_source(pool, source) == nested_lists(200)


# ---- subclasses: accepted as their base type, as the worker does (worker/py_convert.cpp) ---------

class Colour(enum.IntEnum):
    RED = 1


class Label(str):
    pass


class Weight(float):
    pass


class Record(dict):
    def items(self):  # a dict subclass's own methods are not consulted: its entries are sent
        raise AssertionError("not called")


@pytest.mark.parametrize("value, base", [
    (Colour.RED, int), (Label("tag"), str), (Weight(2.5), float), (Record(a=1), dict),
    (sys.version_info, tuple),
], ids=lambda v: type(v).__name__)
def test_subclass_crosses_as_its_base_type(pool, value, base):
    back = round_trip(pool, value)
    assert type(back) is base
    assert back == base(value)


def test_subclass_made_in_worker_arrives_as_its_base_type(pool):
    source = "import enum\nclass E(enum.IntEnum):\n    A = 5\n_return(E.A)"
    back = pool.run_async(source).result(BOUND)[0]
    assert back == 5 and type(back) is int


class Hostile(str):
    """A str whose every method a conversion might call raises."""

    def __str__(self):
        raise RuntimeError("__str__")

    def __repr__(self):
        raise RuntimeError("__repr__")

    def encode(self, *args):
        raise RuntimeError("encode")


class HostileInt(int):
    def __index__(self):
        raise RuntimeError("__index__")

    def __int__(self):
        raise RuntimeError("__int__")

    def __repr__(self):
        raise RuntimeError("__repr__")


class HostileList(list):
    def __iter__(self):
        raise RuntimeError("__iter__")

    def __len__(self):
        raise RuntimeError("__len__")

    def __getitem__(self, i):
        raise RuntimeError("__getitem__")


class HostileDict(dict):
    def __iter__(self):
        raise RuntimeError("__iter__")

    def keys(self):
        raise RuntimeError("keys")


def test_subclasses_whose_methods_raise_are_read_without_calling_them(pool):
    value = HostileList([Hostile("s"), HostileInt(10**30), HostileDict({Hostile("k"): 1})])
    assert round_trip(pool, value) == ["s", 10**30, {"k": 1}]


def test_hostile_str_as_a_variable_name_and_as_source(pool):
    assert pool.run_async(Hostile("_return(x)"), {Hostile("x"): 1}).result(BOUND) == [1]


class Unnameable(type):
    def __getattribute__(cls, name):
        raise RuntimeError(name)


class Opaque(metaclass=Unnameable):
    pass


def test_refusal_of_a_type_whose_names_cannot_be_read_still_names_it(pool):
    caught = refusal(pool, v=[Opaque()])
    assert caught.type is TypeError
    assert "variable 'v'[0]: unsupported type 'Opaque'" in str(caught.value)


def test_int_of_fifty_thousand_digits_crosses_both_ways(pool):
    big = -(10**50_000 + 7)
    assert round_trip(pool, big) == big


# ---- what vial refuses at the call ---------------------------------------------------------------

def refusal(pool, **variables):
    with pytest.raises((TypeError, ValueError)) as caught:
        pool.run_async("_return(1)", **variables)
    return caught


@pytest.mark.parametrize("value, type_name", [
    ({1, 2}, "set"), (frozenset(), "frozenset"), (object(), "object"), (1j, "complex"),
    (len, "builtin_function_or_method"), (Exception("x"), "Exception"),
])
def test_unsupported_type_is_a_type_error_naming_the_type(pool, value, type_name):
    caught = refusal(pool, items=value)
    assert caught.type is TypeError
    assert f"variable 'items': unsupported type '{type_name}'" in str(caught.value)


def test_unsupported_type_deep_inside_names_where_it_sits(pool):
    caught = refusal(pool, items=[1, (2, {"k": [0, {3}]})])
    assert caught.type is TypeError
    assert str(caught.value).startswith("variable 'items'[1][1]['k'][1]: unsupported type 'set'")


@pytest.mark.parametrize("key", ["it's", "nul\0inside", "line\nbreak", "é"])
def test_place_under_an_awkward_key_is_quoted_as_python_would(pool, key):
    caught = refusal(pool, items={key: {1}})
    assert str(caught.value).startswith(f"variable 'items'[{key!r}]: unsupported type 'set'")


def test_awkward_variable_name_is_quoted_as_python_would(pool):
    caught = refusal(pool, **{"odd\0name": {1}})
    assert str(caught.value).startswith("variable 'odd\\x00name': unsupported type 'set'")


def test_dict_with_int_key_is_a_type_error(pool):
    caught = refusal(pool, items={"ok": {1: "x"}})
    assert caught.type is TypeError
    assert "variable 'items'['ok']: dict key of type 'int' (keys must be str)" in str(caught.value)


def test_lone_surrogate_is_a_value_error(pool):
    caught = refusal(pool, text=["fine", "bad \udc80"])
    assert caught.type is ValueError
    assert "variable 'text'[1]: str holds a lone surrogate" in str(caught.value)


def test_lone_surrogate_in_a_dict_key_is_a_value_error_naming_the_key(pool):
    caught = refusal(pool, d={"ok": {"\udc80": 1}})
    assert caught.type is ValueError
    assert str(caught.value) == ("variable 'd'['ok']: dict key '\\udc80' holds a lone surrogate "
                                 "and cannot be encoded as UTF-8")


def test_nesting_deeper_than_200_levels_is_a_value_error(pool):
    caught = refusal(pool, deep=nested_lists(201))
    assert caught.type is ValueError
    assert "nested deeper than 200 levels" in str(caught.value)


def test_self_containing_list_is_a_value_error_in_a_short_message(pool):
    loop = [1]
    loop.append(loop)
    caught = refusal(pool, loop=loop)
    assert caught.type is ValueError
    assert str(caught.value) == ("variable 'loop'[1][1][1][1][1]...[1][1][0] (201 levels down): "
                                 "nested deeper than 200 levels (a cycle?)")


def test_variable_name_that_is_not_a_str_is_a_type_error(pool):
    with pytest.raises(TypeError, match="a variable's name must be a str, not 'int'"):
        pool.run_async("_return(1)", {1: "one"})


def test_refused_call_never_reaches_the_pool(pool):
    before = pool.stats()["submitted"]
    refusal(pool, items={1})
    assert pool.stats()["submitted"] == before


def test_source_that_is_not_a_str_is_a_type_error(pool):
    with pytest.raises(TypeError, match="source must be a str, not bytes"):
        pool.run_async(b"_return(1)")


# ---- what the code cannot send back ------------------------------------------------------------

@pytest.mark.parametrize("expression, says", [
    ("{1, 2}", "unsupported type 'set'"),
    ("object()", "unsupported type 'object'"),
    ("{1: 2}", "dict key of type 'int'"),
    ("'\\udc80'", "lone surrogate"),
])
def test_return_of_a_value_that_cannot_cross_is_a_python_error(pool, expression, says):
    with pytest.raises(vial.PythonError) as caught:
        pool.run_async(f"_return({expression})").result(BOUND)
    assert caught.value.type == "TypeError"
    assert "passed to _return" in caught.value.message and says in caught.value.message


def test_return_of_a_self_containing_list_is_a_python_error(pool):
    with pytest.raises(vial.PythonError, match="nested deeper than 200"):
        pool.run_async("l = []\nl.append(l)\n_return(l)").result(BOUND)


# ---- large values --------------------------------------------------------------------------------

def test_ten_mebibytes_of_bytes_cross_both_ways(pool):
    value = bytes(range(256)) * (40 << 10)  # 10 MiB
    assert round_trip(pool, value) == value


def test_a_hundred_thousand_items_cross_both_ways(pool):
    value = list(range(100_000))
    assert round_trip(pool, value) == value
