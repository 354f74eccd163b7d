#pragma once

// Header-only, for kj code (as deferred_destruction.h).

#include <kj/async.h>
#include <kj/timer.h>

namespace vial {

// A kj::Timer whose now() is the clock's, not the event loop's last look at it.
//
// kj's event port reads the clock only when its loop runs out of events, so its timer's now() is
// the time of that look: after a long turn (a big message decoded, a callback that blocks, a
// process the kernel did not schedule) it lies in the past, and afterDelay(d) ends early by the
// turn's length. A proc_timeout armed then could kill a worker long before the call's limit. A
// FreshTimer reads the clock at each now() and afterDelay(), and leaves the waiting to the loop's
// timer.
class FreshTimer final : public kj::Timer {
 public:
  // `clock` must be the one `loop` follows: kj::systemPreciseMonotonicClock() for an event
  // port's timer; for a kj::TimerImpl advanced by hand, the timer itself.
  FreshTimer(kj::Timer& loop, const kj::MonotonicClock& clock) : loop_(loop), clock_(clock) {}

  kj::TimePoint now() const override {
    kj::TimePoint read = clock_.now(), looked = loop_.now();
    return read > looked ? read : looked;
  }
  kj::Promise<void> atTime(kj::TimePoint time) override { return loop_.atTime(time); }
  kj::Promise<void> afterDelay(kj::Duration delay) override { return loop_.atTime(now() + delay); }

 private:
  kj::Timer& loop_;
  const kj::MonotonicClock& clock_;
};

// The loop's timer made fresh: for code whose timer is an event port's.
inline FreshTimer freshTimer(kj::Timer& loop) {
  return FreshTimer(loop, kj::systemPreciseMonotonicClock());
}

}  // namespace vial
