#!/usr/bin/python3
"""vial from Python: the original document's example, then the ways a result can arrive.

    PYTHONPATH=build/python /usr/bin/python3 examples/python_pool.py
"""

import asyncio

import vial

SOURCE = """
val = testvar + 5
_return(val)
_return(val + 5)
"""

with vial.Pool(workers=2, proc_timeout=10) as pool:
    # A concurrent.futures.Future of every _return value, in order.
    print(pool.run_async(SOURCE, testvar=3).result())  # [8, 13]

    # Failures are typed exceptions.
    try:
        pool.run_async("import time; time.sleep(5)", proc_timeout=0.2).result()
    except vial.Timeout as e:
        print("timed out after", e.limit, "s")  # timed out after 0.2 s
    try:
        pool.run_async("_return(1 / zero)", zero=0).result()
    except vial.PythonError as e:
        print(e.type)  # ZeroDivisionError

    # From asyncio: the result arrives on the running loop.
    async def main():
        results = await asyncio.gather(*(pool.run("_return(n * n)", n=n) for n in range(4)))
        print(results)  # [[0], [1], [4], [9]]

    asyncio.run(main())
