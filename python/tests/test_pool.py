"""vial.Pool from Python: results, outcomes, values (the suite grows in this file's siblings)."""

import vial


def test_original_example_returns_every_value(pool):
    future = pool.run_async("_return(testvar + 5)\n_return(testvar + 10)", testvar=3)
    assert future.result(timeout=30) == [8, 13]
