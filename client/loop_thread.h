// vial::client::LoopThread<Service>: a kj event loop on a thread of its own, holding a Service
// that is created, used and destroyed on that thread only, and an Inbox of work posted to it
// from any thread. The embedded Pool (Service = the WorkerPool) and the Client of `vial serve`
// (Service = the RPC connection) are each one of these.
//
// Thread-safety and lifetimes:
// - post(), stop() and the Poster may be used from any thread.
// - A posted task either runs on the loop thread while the Service exists, or is abandoned:
//   its `abandon` runs (on the thread that learns the loop will not run it). The Inbox is shared
//   with every Poster, so a post after the LoopThread is gone finds a closed inbox and is
//   abandoned: never a use of freed memory (the Future's canceller relies on this).
// - The Service pointer that tasks receive is only ever used on the loop thread, between its
//   creation and its destruction: the inbox is closed before the Service is destroyed.
#pragma once

#include <kj/async-io.h>

#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "util/event_fd.h"
#include "util/mutex_guarded.h"

namespace vial::client {

/// Work posted to a loop thread. Thread-safe.
class Inbox {
 public:
  struct Task {
    std::function<void()> run;      // on the loop thread
    std::function<void()> abandon;  // may be empty; when `run` will never run
  };
  /// What the loop thread takes in one turn.
  struct Batch {
    std::vector<Task> tasks;
    /// Set once, in the turn that sees the stop request: what to run to the end before the
    /// loop ends (may be empty).
    std::function<kj::Promise<void>()> finish;
    bool stop = false;
  };

  /// Queues `task` for the loop thread, or abandons it here and now when the inbox takes no more
  /// work (a stop was requested, or the loop has ended).
  void post(Task task);
  /// Asks the loop to end after the tasks posted so far, running `finish` first. The first
  /// request wins; later ones change nothing.
  void requestStop(std::function<kj::Promise<void>()> finish);

  // The loop thread's side.
  int fd() const { return wake_.fd(); }
  Batch take();
  /// No more work: abandons what is queued; later posts are abandoned at once.
  void close();

 private:
  struct State {
    std::vector<Task> tasks;
    bool stopRequested = false;
    bool stopTaken = false;
    std::function<kj::Promise<void>()> finish;
    bool closed = false;
  };
  util::EventFd wake_;
  util::MutexGuarded<State> state_;
};

/// What a Service may tell the loop. Implemented by the Service type of a LoopThread.
class LoopService {
 public:
  virtual ~LoopService() noexcept(false) = default;  // kj destructors may throw
  /// Resolves when the service cannot go on by itself (its connection dropped): the loop then
  /// ends as if stopped. Never, by default.
  virtual kj::Promise<void> whenEnded() { return kj::NEVER_DONE; }
  /// The loop failed after start-up (a task or a wait threw); the loop ends after this.
  virtual void loopFailed(const char* why) = 0;
};

/// The thread, the start-up handshake and the one way the loop ends. Not used directly: see
/// LoopThread<Service>.
class LoopThreadBase {
 public:
  LoopThreadBase(const LoopThreadBase&) = delete;
  LoopThreadBase& operator=(const LoopThreadBase&) = delete;

 protected:
  using Make = std::function<kj::Own<LoopService>(kj::AsyncIoContext&)>;
  /// Starts the thread and runs `make` there; returns once the service exists, or rethrows
  /// what `make` (or setting up the event loop) threw, after the thread has ended; a
  /// kj::Exception arrives as a std::runtime_error with its description.
  explicit LoopThreadBase(Make make);
  /// stop() without a finishing step, if nobody stopped it before.
  ~LoopThreadBase();

  /// The orderly end: the tasks posted before run, then `finish`, then the inbox closes
  /// (abandoning what came later), the service is destroyed on the loop thread, and the thread
  /// is joined. Blocks until then. Idempotent; any thread but the loop thread.
  void stopWith(std::function<kj::Promise<void>()> finish);

  const std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  LoopService* service_ = nullptr;  // set before the constructor returns; loop thread use only

 private:
  void run(const Make& make, const std::shared_ptr<std::promise<void>>& started);
  void runOrAbandon(Inbox::Task& task);
  void serve(kj::AsyncIoContext& io, LoopService& service);

  util::MutexGuarded<std::thread> thread_;
};

template <class Service>
class LoopThread : private LoopThreadBase {
 public:
  using Run = std::function<void(Service&)>;

  /// A copyable handle that posts to the loop and may outlive it (it co-owns the inbox).
  class Poster {
   public:
    /// See LoopThread::post.
    void post(Run run, std::function<void()> abandon = nullptr) const {
      Service* service = service_;
      inbox_->post(
          Inbox::Task{[service, run = std::move(run)] { run(*service); }, std::move(abandon)});
    }

   private:
    friend class LoopThread;
    Poster(std::shared_ptr<Inbox> inbox, Service* service)
        : inbox_(std::move(inbox)), service_(service) {}
    std::shared_ptr<Inbox> inbox_;
    Service* service_;  // dereferenced only by tasks, on the loop thread (see above)
  };

  /// Starts the loop thread and creates the service there with `make(io)`; throws what `make`
  /// threw (see LoopThreadBase's constructor).
  explicit LoopThread(std::function<kj::Own<Service>(kj::AsyncIoContext&)> make)
      : LoopThreadBase([make = std::move(make)](kj::AsyncIoContext& io) -> kj::Own<LoopService> {
          return make(io);
        }) {}

  /// Runs `run(service)` on the loop thread, in order with other posts; or `abandon` if the
  /// loop will not run it (it is stopping or has ended).
  void post(Run run, std::function<void()> abandon = nullptr) const {
    poster().post(std::move(run), std::move(abandon));
  }
  Poster poster() const { return Poster(inbox_, static_cast<Service*>(service_)); }

  /// See LoopThreadBase::stopWith; `finish(service)` runs on the loop thread.
  void stop(std::function<kj::Promise<void>(Service&)> finish = nullptr) {
    auto* service = static_cast<Service*>(service_);
    stopWith(finish ? std::function<kj::Promise<void>()>(
                          [service, finish = std::move(finish)] { return finish(*service); })
                    : nullptr);
  }
};

}  // namespace vial::client
