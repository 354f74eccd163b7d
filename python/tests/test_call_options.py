"""run_async's own keywords: proc_timeout, soft_timeout and queue_timeout set the call's limits,
idempotent says it may run twice; variables of those names go in the dict given as its second
argument."""

import pytest

import vial
from conftest import BOUND


LIMITS = ("proc_timeout", "soft_timeout", "queue_timeout")


def test_reserved_keywords_are_documented():
    assert vial.RESERVED_KEYWORDS == LIMITS + ("idempotent",)


def test_variables_named_like_reserved_keywords_go_in_the_dict(pool):
    future = pool.run_async("_return([proc_timeout, soft_timeout, queue_timeout])",
                            {"proc_timeout": "p", "soft_timeout": "s", "queue_timeout": "q"})
    assert future.result(BOUND) == [["p", "s", "q"]]


def test_reserved_keywords_are_not_variables(pool):
    future = pool.run_async("_return('proc_timeout' in globals())", proc_timeout=5)
    assert future.result(BOUND) == [False]


def test_a_variable_named_idempotent_goes_in_the_dict(pool):
    future = pool.run_async("_return(idempotent)", {"idempotent": "yes"}, idempotent=True)
    assert future.result(BOUND) == ["yes"]


def test_idempotent_runs_a_pools_call_as_usual(pool):
    # A pool has no other host to re-send to: the flag changes nothing (test_connect.py shows
    # what it does for a connection).
    future = pool.run_async("_return('idempotent' in globals())", idempotent=True)
    assert future.result(BOUND) == [False]


@pytest.mark.parametrize("value", [1, "yes", None])
def test_idempotent_that_is_not_a_bool_is_a_type_error(pool, value):
    with pytest.raises(TypeError) as caught:
        pool.run_async("_return(1)", idempotent=value)
    assert str(caught.value) == f"idempotent must be True or False, not {type(value).__name__}"


def test_dict_and_keywords_together_make_the_variables(pool):
    future = pool.run_async("_return([a, b])", {"a": 1, "b": 2}, b=3)
    assert future.result(BOUND) == [[1, 3]], "a keyword overrides the dict's entry"


def test_variables_dict_is_not_changed(pool):
    variables = {"a": 1}
    pool.run_async("_return(a)", variables, b=2).result(BOUND)
    assert variables == {"a": 1}


def test_reserved_keyword_sets_the_limit_while_the_dict_sets_the_variable(pool):
    with pytest.raises(vial.Timeout) as caught:
        pool.run_async("import time\ntime.sleep(proc_timeout)", {"proc_timeout": 30},
                       proc_timeout=0.2).result(BOUND)
    assert caught.value.limit == 0.2


def test_no_timeout_lifts_the_pools_limit_for_one_call():
    with vial.Pool(workers=1, proc_timeout=0.2) as pool:
        future = pool.run_async("import time\ntime.sleep(0.5)\n_return('done')",
                                proc_timeout=vial.NO_TIMEOUT)
        assert future.result(BOUND) == ["done"]


def test_longer_proc_timeout_per_call_overrides_the_pools():
    with vial.Pool(workers=1, proc_timeout=0.2) as pool:
        future = pool.run_async("import time\ntime.sleep(0.5)\n_return('done')", proc_timeout=5)
        assert future.result(BOUND) == ["done"]


SPIN_UNTIL_STOPPED = """
import time
try:
    count = 0
    while True:
        count += 1
finally:
    print('cleaned up')
"""


def test_soft_timeout_raises_in_the_code_and_finally_runs(pool):
    with pytest.raises(vial.PythonError) as caught:
        pool.run_async(SPIN_UNTIL_STOPPED, soft_timeout=0.2, proc_timeout=10).result(BOUND)
    assert caught.value.type == "vial.SoftTimeout"
    assert caught.value.stdout == "cleaned up\n"


def test_soft_timeout_can_be_caught_by_the_code_as_a_timeout_error(pool):
    source = ("try:\n    x = 0\n    while True:\n        x += 1\n"
              "except TimeoutError as e:\n    _return(type(e).__name__)")
    assert pool.run_async(source, soft_timeout=0.2, proc_timeout=10).result(BOUND) == [
        "SoftTimeout"]


def test_pools_soft_timeout_applies_to_every_call():
    with vial.Pool(workers=1, soft_timeout=0.2, proc_timeout=10) as pool:
        with pytest.raises(vial.PythonError, match="SoftTimeout"):
            pool.run_async(SPIN_UNTIL_STOPPED).result(BOUND)
        assert pool.run_async("_return('worker survived')").result(BOUND) == ["worker survived"]


def test_soft_timeout_not_below_proc_timeout_is_rejected(pool):
    with pytest.raises(vial.Rejected, match="soft_timeout"):
        pool.run_async("_return(1)", soft_timeout=2, proc_timeout=1).result(BOUND)


@pytest.mark.parametrize("keyword", LIMITS)
@pytest.mark.parametrize("value", [-1, 0, float("nan")])
def test_limit_that_is_not_a_positive_number_is_rejected(pool, keyword, value):
    with pytest.raises(vial.Rejected, match=keyword):
        pool.run_async("_return(1)", **{keyword: value}).result(BOUND)


@pytest.mark.parametrize("keyword", LIMITS)
@pytest.mark.parametrize("value", ["5", [5], True])
def test_limit_that_is_not_a_number_is_a_type_error_naming_it(pool, keyword, value):
    with pytest.raises(TypeError) as caught:
        pool.run_async("_return(1)", **{keyword: value})
    assert str(caught.value) == (
        f"{keyword} must be a number of seconds or None, not {type(value).__name__}")


def test_source_with_a_lone_surrogate_is_a_value_error(pool):
    with pytest.raises(ValueError, match="source: str holds a lone surrogate"):
        pool.run_async("_return('\udc80')")


def test_source_that_is_a_str_subclass_runs(pool):
    class Source(str):
        pass

    assert pool.run_async(Source("_return(1)")).result(BOUND) == [1]
