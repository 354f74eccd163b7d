// protocol/gathering_write_stream: a lone small write goes at once, and the small writes behind
// it reach the stream below as one write, in order; a large write goes out without a copy, after
// what was gathered before it, and is done only when written; whenWritten() tells when what was
// written is out; a failed write fails every later one. In-process, over kj's in-memory pipes.
#include "protocol/gathering_write_stream.h"

#include <kj/async-io.h>
#include <kj/debug.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using vial::GatheringWriteStream;

// Records the writes that reach the stream it wraps.
class CountingStream final : public vial::ForwardingStream {
 public:
  CountingStream(kj::Own<kj::AsyncIoStream> inner, std::vector<size_t>& writes)
      : ForwardingStream(kj::mv(inner)), writes_(writes) {}
  kj::Promise<void> write(const void* buffer, size_t size) override {
    writes_.push_back(size);
    return inner().write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    size_t size = 0;
    for (auto piece : pieces) size += piece.size();
    writes_.push_back(size);
    return inner().write(pieces);
  }

 private:
  std::vector<size_t>& writes_;
};

// A stream to a peer that has died: every write fails as a socket's does (EPIPE), with
// DISCONNECTED, in a later turn.
class DeadPeerStream final : public vial::ForwardingStream {
 public:
  using ForwardingStream::ForwardingStream;
  kj::Promise<void> write(const void*, size_t) override { return failLater(); }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>>) override {
    return failLater();
  }

 private:
  static kj::Promise<void> failLater() {
    return kj::evalLater([]() -> kj::Promise<void> { return KJ_EXCEPTION(DISCONNECTED, "EPIPE"); });
  }
};

class GatheringWriteStreamTest : public ::testing::Test {
 protected:
  GatheringWriteStreamTest() : waitScope_(loop_) {
    auto pipe = kj::newTwoWayPipe();
    reader_ = kj::mv(pipe.ends[1]);
    writer_ =
        kj::heap<GatheringWriteStream>(kj::heap<CountingStream>(kj::mv(pipe.ends[0]), writes_));
  }
  ~GatheringWriteStreamTest() noexcept override {}

  kj::Promise<void> write(const std::string& text) {
    return writer_->write(text.data(), text.size());
  }
  std::string read(size_t bytes) {
    std::string text(bytes, '\0');
    reader_->read(text.data(), bytes).wait(waitScope_);
    return text;
  }
  void runPending() { loop_.run(); }

  kj::EventLoop loop_;
  kj::WaitScope waitScope_;
  std::vector<size_t> writes_;
  kj::Own<kj::AsyncIoStream> reader_;
  kj::Own<GatheringWriteStream> writer_;
};

TEST_F(GatheringWriteStreamTest, ALoneWriteGoesAtOnceAndThoseBehindItGoTogether) {
  std::string first = "first;";
  EXPECT_TRUE(write(first).poll(waitScope_)) << "a small write was not done at once";
  EXPECT_EQ(writes_, (std::vector<size_t>{first.size()}))
      << "a write with nothing in progress waited for the end of the turn";
  std::string rest;
  for (int i = 0; i < 40; ++i) {
    std::string piece = "message " + std::to_string(i) + ";";
    EXPECT_TRUE(write(piece).poll(waitScope_)) << "a small write was not done at once";
    rest += piece;
  }
  EXPECT_FALSE(writer_->idle());
  EXPECT_EQ(read(first.size() + rest.size()), first + rest);
  EXPECT_EQ(writes_, (std::vector<size_t>{first.size(), rest.size()}))
      << "40 small writes behind one in progress reached the socket as " << writes_.size() - 1
      << " writes";
  runPending();
  EXPECT_TRUE(writer_->idle());
}

TEST_F(GatheringWriteStreamTest, ALargeWriteGoesOutUncopiedInItsPlaceAndIsDoneWhenWritten) {
  std::string large(2 * GatheringWriteStream::kDirectBytes, 'x');
  EXPECT_TRUE(write("before").poll(waitScope_));
  auto largeDone = write(large);
  EXPECT_TRUE(write("after").poll(waitScope_));
  // The pipe holds nothing until it is read: the large write cannot be done yet.
  EXPECT_FALSE(largeDone.poll(waitScope_)) << "a large write was done before it was written";
  EXPECT_EQ(read(6 + large.size() + 5), "before" + large + "after");
  largeDone.wait(waitScope_);
  EXPECT_EQ(writes_, (std::vector<size_t>{6, large.size(), 5}));
}

TEST_F(GatheringWriteStreamTest, WhenWrittenResolvesOnceWhatWasWrittenIsOut) {
  write("answer").poll(waitScope_);
  auto written = writer_->whenWritten();
  EXPECT_FALSE(written.poll(waitScope_)) << "resolved before the peer could have the bytes";
  EXPECT_EQ(writes_, (std::vector<size_t>{6}));
  EXPECT_EQ(read(6), "answer");
  written.wait(waitScope_);
  EXPECT_TRUE(writer_->idle());
  EXPECT_TRUE(writer_->whenWritten().poll(waitScope_)) << "nothing to write, yet not resolved";
}

TEST_F(GatheringWriteStreamTest, AFailedWriteFailsEveryLaterOne) {
  reader_ = nullptr;  // the peer is gone
  write("lost").poll(waitScope_);
  auto written = writer_->whenWritten();
  written.wait(waitScope_);  // resolves: nothing is left to write, though it failed
  auto later = write("later");
  EXPECT_ANY_THROW(later.wait(waitScope_)) << "a write after a failed one did not fail";
  std::string large(GatheringWriteStream::kDirectBytes, 'x');
  EXPECT_ANY_THROW(write(large).wait(waitScope_));
}

// The pool's end of a worker's socket drops write failures of type DISCONNECTED, so that a dead
// worker's unread answers are still read (pool/peer_stream.h): a large write queued behind a
// write that fails must fail the same way, not as a broken promise (FAILED), which Cap'n Proto
// would turn into a failed read at once.
TEST_F(GatheringWriteStreamTest, ALargeWriteQueuedBehindAFailedOneFailsWithItsException) {
  auto pipe = kj::newTwoWayPipe();
  GatheringWriteStream writer(kj::heap<DeadPeerStream>(kj::mv(pipe.ends[0])));
  std::string small = "finish", large(GatheringWriteStream::kDirectBytes, 'x');
  EXPECT_TRUE(writer.write(small.data(), small.size()).poll(waitScope_));
  auto largeDone = writer.write(large.data(), large.size());
  auto type =
      largeDone
          .then([]() { return kj::Maybe<kj::Exception::Type>(); },
                [](kj::Exception&& e) { return kj::Maybe<kj::Exception::Type>(e.getType()); })
          .wait(waitScope_);
  KJ_IF_MAYBE (t, type) {
    EXPECT_EQ(*t, kj::Exception::Type::DISCONNECTED) << "failed as " << kj::str(*t).cStr();
  } else {
    ADD_FAILURE() << "a write behind a failed one succeeded";
  }
}

// Cap'n Proto ends a connection by sending an Abort message (why it ends) and then shutting down
// the write side (TwoPartyVatNetwork::shutdown, after the message's write): the bytes gathered
// before the shutdown must reach the peer before its end.
TEST_F(GatheringWriteStreamTest, WhatWasWrittenBeforeAShutdownGoesOutBeforeIt) {
  EXPECT_TRUE(write("abort: why").poll(waitScope_));
  writer_->shutdownWrite();
  auto text = reader_->readAllText().wait(waitScope_);
  EXPECT_EQ(std::string(text.cStr()), "abort: why");
}

// The pool kills a worker, the server drops a connection: the stream goes with writes in
// progress, gathered and waited for. Nothing of it runs afterwards (AddressSanitizer's build
// checks); whoever waits hears that it failed.
TEST_F(GatheringWriteStreamTest, DestroyedWithWritesPendingItLeavesNothingRunning) {
  std::string large(2 * GatheringWriteStream::kDirectBytes, 'x');
  EXPECT_TRUE(write("before").poll(waitScope_));
  auto largeDone = write(large);
  EXPECT_TRUE(write("after").poll(waitScope_));
  auto written = writer_->whenWritten();
  EXPECT_TRUE(write("gathered").poll(waitScope_));
  writer_ = nullptr;
  runPending();
  EXPECT_ANY_THROW(largeDone.wait(waitScope_));
  EXPECT_ANY_THROW(written.wait(waitScope_));
  auto text = reader_->readAllText().wait(waitScope_);
  EXPECT_LT(text.size(), 6 + large.size()) << "the large write went on after the stream was gone";
}

}  // namespace
