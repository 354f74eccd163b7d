# The ProcPool example of Evennia's "Asynchronous code" document, with a shorter sleep.
#   vial run --var testvar=3 examples/original_pool_example.py    ->  [8, 13]
from time import sleep
sleep(0.5)  # the original slept five seconds
val = testvar + 5
_return(val)
_return(val + 5)
