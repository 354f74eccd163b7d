// Sanitizer settings compiled into vial-worker when vial is built with VIAL_SANITIZE or VIAL_TSAN.
// A worker gets a minimal environment (no ASAN_OPTIONS from the host), and what the sanitizers
// would change by default is exactly what the tests check:
// - handle_segv/abort/sigbus/sigfpe=0: a crash in Python code kills the worker with its own
//   signal (WorkerCrashed names it), instead of ASan's report and exit code 1;
// - allocator_may_return_null=1: bytearray(1 << 44) is a MemoryError, as without ASan;
// - detect_leaks=0: the interpreter is never finalized (workers leave with _exit), so what it
//   holds is not a leak.
// Reports still go to the worker's stderr, which the pool logs.
extern "C" const char* __asan_default_options() {
  return "handle_segv=0:handle_abort=0:handle_sigbus=0:handle_sigfpe=0:"
         "allocator_may_return_null=1:detect_leaks=0";
}

extern "C" const char* __ubsan_default_options() {
  return "print_stacktrace=1";
}

// ThreadSanitizer, too, would turn a crash into its own report and exit code 66.
extern "C" const char* __tsan_default_options() {
  return "handle_segv=0:handle_abort=0:handle_sigbus=0:handle_sigfpe=0";
}
