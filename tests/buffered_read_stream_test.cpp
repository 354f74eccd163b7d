// protocol/buffered_read_stream: Cap'n Proto messages read through it arrive whole and in order
// whatever their size and however the bytes were split; many small messages written together
// cost one read of the stream below; a large message is read straight into place; the end of
// the stream is told as such. In-process, over kj's in-memory pipes.
#include "protocol/buffered_read_stream.h"

#include <capnp/message.h>
#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protocol/vial.capnp.h"

namespace {

using vial::BufferedReadStream;

// Counts the reads that reach the stream it wraps.
class CountingStream final : public vial::ForwardingStream {
 public:
  CountingStream(kj::Own<kj::AsyncIoStream> inner, int& reads)
      : ForwardingStream(kj::mv(inner)), reads_(reads) {}
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override {
    ++reads_;
    return inner().tryRead(buffer, minBytes, maxBytes);
  }

 private:
  int& reads_;
};

// A message holding `text`.
kj::Array<capnp::word> frameOf(const std::string& text) {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<vial::wire::Value>().setText(text);
  return capnp::messageToFlatArray(builder);
}

std::string textOf(capnp::MessageReader& message) {
  return message.getRoot<vial::wire::Value>().getText();
}

class BufferedReadStreamTest : public ::testing::Test {
 protected:
  BufferedReadStreamTest() : waitScope_(loop_) {
    auto pipe = kj::newTwoWayPipe();
    writer_ = kj::mv(pipe.ends[0]);
    reader_ = kj::heap<BufferedReadStream>(kj::heap<CountingStream>(kj::mv(pipe.ends[1]), reads_));
  }
  ~BufferedReadStreamTest() noexcept override {}

  // Writes `frames` as one write (in the background) and reads them back as messages.
  std::vector<std::string> roundTrip(const std::vector<kj::Array<capnp::word>>& frames) {
    kj::Vector<kj::byte> all;
    for (auto& frame : frames) all.addAll(frame.asBytes());
    auto bytes = all.releaseAsArray();
    auto written = writer_->write(bytes.begin(), bytes.size()).eagerlyEvaluate(nullptr);
    std::vector<std::string> texts;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      auto message =
          capnp::readMessage(*reader_, capnp::ReaderOptions{1 << 26, 64}).wait(waitScope_);
      texts.push_back(textOf(*message));
    }
    written.wait(waitScope_);
    return texts;
  }

  kj::EventLoop loop_;
  kj::WaitScope waitScope_;
  int reads_ = 0;
  kj::Own<kj::AsyncIoStream> writer_;
  kj::Own<kj::AsyncIoStream> reader_;
};

TEST_F(BufferedReadStreamTest, ManySmallMessagesWrittenTogetherCostOneRead) {
  std::vector<kj::Array<capnp::word>> frames;
  std::vector<std::string> expected;
  for (int i = 0; i < 40; ++i) {
    expected.push_back("message " + std::to_string(i));
    frames.push_back(frameOf(expected.back()));
  }
  EXPECT_EQ(roundTrip(frames), expected);
  // Each message takes at least two exact-size reads (its header, then its segment) without
  // the buffer: 80 or more here.
  EXPECT_EQ(reads_, 1) << "the 40 messages were not read from the buffer";
}

TEST_F(BufferedReadStreamTest, LargeMessagesArriveWholeAmongSmallOnes) {
  std::string large(5 * BufferedReadStream::kBufferBytes + 3, 'x');
  std::string border(BufferedReadStream::kBufferBytes - 40, 'y');  // around the buffer's size
  std::vector<std::string> expected = {"before", large, "between", border, border, "after"};
  std::vector<kj::Array<capnp::word>> frames;
  for (auto& text : expected) frames.push_back(frameOf(text));
  EXPECT_EQ(roundTrip(frames), expected);
}

TEST_F(BufferedReadStreamTest, BytesSplitAcrossWritesStillMakeWholeMessages) {
  auto frame = frameOf(std::string(3000, 'z'));
  auto bytes = frame.asBytes();
  auto reading = capnp::readMessage(*reader_).eagerlyEvaluate(nullptr);
  for (std::size_t at = 0; at < bytes.size(); at += 7) {
    std::size_t n = std::min<std::size_t>(7, bytes.size() - at);
    writer_->write(bytes.begin() + at, n).wait(waitScope_);
  }
  auto message = reading.wait(waitScope_);
  EXPECT_EQ(textOf(*message), std::string(3000, 'z'));
}

// Cap'n Proto reads an empty segment as zero bytes into no buffer (found by the pre-login fuzzer:
// memcpy from or to a null pointer is undefined even for zero bytes).
TEST_F(BufferedReadStreamTest, AZeroByteReadIntoNoBufferIsFine) {
  EXPECT_EQ(reader_->tryRead(nullptr, 0, 0).wait(waitScope_), 0u);
  auto frame = frameOf("after");
  auto written =
      writer_->write(frame.asBytes().begin(), frame.asBytes().size()).eagerlyEvaluate(nullptr);
  char first = 0;
  EXPECT_EQ(reader_->tryRead(&first, 1, 1).wait(waitScope_), 1u);  // fills the read-ahead
  EXPECT_EQ(reader_->tryRead(nullptr, 0, 0).wait(waitScope_), 0u);
}

TEST_F(BufferedReadStreamTest, TheEndOfTheStreamIsToldAfterWhatCameBefore) {
  auto frame = frameOf("last words");
  // In the background: an in-memory pipe's write waits for the reader.
  auto written = writer_->write(frame.asBytes().begin(), frame.asBytes().size())
                     .then([this] { writer_->shutdownWrite(); })
                     .eagerlyEvaluate(nullptr);
  auto message = capnp::tryReadMessage(*reader_).wait(waitScope_);
  ASSERT_TRUE(message != nullptr);
  EXPECT_EQ(textOf(*KJ_ASSERT_NONNULL(message)), "last words");
  EXPECT_TRUE(capnp::tryReadMessage(*reader_).wait(waitScope_) == nullptr)
      << "a message was read after the end of the stream";
  char byte;
  EXPECT_EQ(reader_->tryRead(&byte, 1, 1).wait(waitScope_), 0u);
}

}  // namespace
