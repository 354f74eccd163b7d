"""vial.twisted: Evennia's run_async on a vial pool (written next)."""
